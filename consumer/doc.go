// Package consumer is Interlock's command processor: the owner of command
// partitions that turns commands into events exactly once.
//
// One Processor per process joins the processors' consumer group with a
// franz-go GroupTransactSession. Each partition of a commands topic has one
// owner; the owner holds the state of that partition's aggregates in memory,
// rebuilt from the matching events partition when the partition is
// assigned. Each polled batch runs in one Kafka transaction: the events of
// every applied command, the replies, and the command offsets commit
// together or not at all. Handlers run against staged copies of state, which
// replace the live state only after the commit.
package consumer
