// KafkaCheck: the readiness check that scripts/services.sh runs against the
// Kafka it starts. Compiled once with javac against the broker's own jars
// (kafka-clients comes with them), so it needs nothing but Java.
//
//   java -cp JARS:DIR KafkaCheck probe BOOTSTRAP BROKERS TIMEOUT_MS
//       answers metadata: prints "brokers=N controller=ID transaction.version=V"
//   java -cp JARS:DIR KafkaCheck ready BOOTSTRAP BROKERS TIMEOUT_MS [isr]
//       retries until TIMEOUT_MS: BROKERS brokers answer metadata, a check
//       topic exists (replication factor min(BROKERS,3)), a transactional
//       producer commits a record, and a read_committed consumer in a group
//       reads it back and commits its offset (this also creates
//       __transaction_state and __consumer_offsets, so the first test does not
//       pay for it). With "isr": also waits until no partition is
//       under-replicated (after a node restart).
//
// Exit status 0 on success, 1 when the deadline passed (the last error is
// printed on stderr), 2 on bad usage.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class KafkaCheck {
    static final String TOPIC = "interlock-services-check";

    public static void main(String[] args) {
        if (args.length < 4 || !(args[0].equals("probe") || args[0].equals("ready"))) {
            System.err.println("usage: KafkaCheck probe|ready BOOTSTRAP BROKERS TIMEOUT_MS [isr]");
            System.exit(2);
        }
        String mode = args[0];
        String bootstrap = args[1];
        int brokers = Integer.parseInt(args[2]);
        long deadline = System.currentTimeMillis() + Long.parseLong(args[3]);
        boolean isr = args.length > 4 && args[4].equals("isr");

        Throwable last = null;
        int attempt = 0;
        while (true) {
            attempt++;
            try {
                String summary = probe(bootstrap, brokers);
                if (mode.equals("ready")) {
                    transaction(bootstrap, brokers);
                    if (isr) {
                        waitInSync(bootstrap, deadline);
                    }
                }
                System.out.println(summary);
                System.exit(0);
            } catch (Throwable t) {
                last = t;
            }
            if (mode.equals("probe") || System.currentTimeMillis() + 1000 > deadline) {
                break;
            }
            sleep(attempt < 5 ? 500 : 1000);
        }
        Throwable root = last;
        while (root instanceof ExecutionException && root.getCause() != null) {
            root = root.getCause();
        }
        System.err.println("kafka check (" + mode + " " + bootstrap + ") failed after " + attempt
                + " attempt(s): " + root);
        System.exit(1);
    }

    static Properties common(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "interlock-services-check");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        return p;
    }

    static String probe(String bootstrap, int brokers) throws Exception {
        try (Admin admin = Admin.create(common(bootstrap))) {
            DescribeClusterResult c = admin.describeCluster();
            Collection<Node> nodes = c.nodes().get(10, TimeUnit.SECONDS);
            Node controller = c.controller().get(10, TimeUnit.SECONDS);
            if (nodes.size() < brokers) {
                throw new IllegalStateException(nodes.size() + " of " + brokers + " brokers registered");
            }
            FeatureMetadata f = admin.describeFeatures().featureMetadata().get(10, TimeUnit.SECONDS);
            FinalizedVersionRange tv = f.finalizedFeatures().get("transaction.version");
            FinalizedVersionRange mv = f.finalizedFeatures().get("metadata.version");
            return "brokers=" + nodes.size()
                    + " controller=" + (controller == null ? "none" : controller.id())
                    + " metadata.version=" + (mv == null ? "?" : mv.maxVersionLevel())
                    + " transaction.version=" + (tv == null ? 0 : tv.maxVersionLevel());
        }
    }

    static void transaction(String bootstrap, int brokers) throws Exception {
        short rf = (short) Math.min(brokers, 3);
        try (Admin admin = Admin.create(common(bootstrap))) {
            try {
                admin.createTopics(List.of(new NewTopic(TOPIC, 1, rf))).all().get(10, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }

        String value = "check-" + UUID.randomUUID();
        Properties pp = common(bootstrap);
        pp.remove(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG);
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "interlock-services-check-" + UUID.randomUUID());
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000");
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "20000");
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        long offset;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            producer.initTransactions();
            producer.beginTransaction();
            RecordMetadata md = producer.send(new ProducerRecord<>(TOPIC, 0, "k", value)).get(20, TimeUnit.SECONDS);
            producer.commitTransaction();
            offset = md.offset();
        }

        Properties cp = common(bootstrap);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, "interlock-services-check");
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        TopicPartition tp = new TopicPartition(TOPIC, 0);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
            consumer.assign(List.of(tp));
            consumer.seek(tp, offset);
            long until = System.currentTimeMillis() + 15000;
            while (System.currentTimeMillis() < until) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    if (value.equals(r.value())) {
                        consumer.commitSync(Map.of(tp, new OffsetAndMetadata(r.offset() + 1)), Duration.ofSeconds(10));
                        return;
                    }
                }
            }
        }
        throw new IllegalStateException("committed record at offset " + offset + " not read back with read_committed");
    }

    static void waitInSync(String bootstrap, long deadline) throws Exception {
        try (Admin admin = Admin.create(common(bootstrap))) {
            while (true) {
                Set<String> names = admin.listTopics(new org.apache.kafka.clients.admin.ListTopicsOptions().listInternal(true))
                        .names().get(10, TimeUnit.SECONDS);
                Map<String, TopicDescription> d = admin.describeTopics(names).allTopicNames().get(10, TimeUnit.SECONDS);
                List<String> behind = new ArrayList<>();
                for (TopicDescription td : d.values()) {
                    for (TopicPartitionInfo p : td.partitions()) {
                        if (p.isr().size() < p.replicas().size() || p.leader() == null) {
                            behind.add(td.name() + "-" + p.partition());
                        }
                    }
                }
                if (behind.isEmpty()) {
                    return;
                }
                if (System.currentTimeMillis() + 1000 > deadline) {
                    throw new IllegalStateException(behind.size() + " partitions under-replicated, e.g. " + behind.get(0));
                }
                sleep(500);
            }
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
