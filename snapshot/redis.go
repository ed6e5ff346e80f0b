package snapshot

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// Default Redis settings. The timeouts are short: a slow or dead Redis
// must cost the processor little time, as it can fall back to the log.
const (
	defaultKeyPrefix    = "interlock"
	defaultDialTimeout  = 2 * time.Second
	defaultReadTimeout  = time.Second
	defaultWriteTimeout = time.Second
)

// Limits of one script call and of one pipeline: a script blocks Redis
// while it runs, and one pipeline must be written and read within the
// write and read timeouts.
const (
	chunkSnapshots = 1000
	chunkBytes     = 1 << 20
	pipelineBytes  = 8 << 20
	loadBatch      = 1000
)

// RedisConfig configures a Redis store. Only URL (or Client) is required.
type RedisConfig struct {
	// URL locates the server: redis://[user:password@]host:port[/db] or
	// rediss:// for TLS, with go-redis's query options (see
	// redis.ParseURL). Ignored when Client is set.
	URL string
	// TLS, if set, is the TLS configuration to use, also with a redis://
	// URL; it overrides the one a rediss:// URL implies. Its ServerName
	// defaults to the URL's host.
	TLS *tls.Config
	// Username and Password, if set, override the URL's (Redis 6 ACL users;
	// a password alone authenticates the default user).
	Username string
	Password string
	// KeyPrefix starts every key of the store, followed by ':' unless it
	// ends with one. It must not contain '{' or '}', which would change the
	// keys' Redis Cluster hash slots. Default "interlock".
	KeyPrefix string
	// DialTimeout, ReadTimeout and WriteTimeout bound connecting and each
	// command or pipeline; a ctx deadline that comes sooner wins. A failed
	// dial is not repeated; a failed command is, on a new connection, as
	// often as the URL's max_retries says (default 3) within ctx. Zero means
	// the URL's dial_timeout, read_timeout or write_timeout, else 2s, 1s
	// and 1s; negative values mean what they mean to go-redis (-1: no
	// timeout).
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// Client, if set, is the client to use instead of one made from the
	// settings above (only KeyPrefix applies); Close does not close it.
	// Enable its ContextTimeoutEnabled option, or ctx deadlines will not
	// interrupt its reads and writes.
	Client *redis.Client
}

// Redis is a Store in Redis (7 or later, or a compatible server).
//
// Each partition's keys share one Redis Cluster hash tag, {topic/id}, so
// its scripts touch a single slot:
//
//	<prefix>:{<topic>/<id>}:meta             hash: t token, w watermark, n save count, g generation
//	<prefix>:{<topic>/<id>}:s:<aggregateID>  hash: v version, o offset,
//	                                         f fingerprint, s state, g generation
//
// Claim, Save and the version and token checks are Lua scripts, so a
// fenced owner writes nothing; tokens come from the Redis server's clock,
// so the clocks of processors do not matter. A large Save is split into
// several script calls, each checking the token, and only the last, sent
// after all others succeeded, advances the watermark. A Save that races
// with a Claim may have stored its first chunks (written while its token
// was current, and only where their versions are newer) but never its
// watermark. Keys have no expiry, and none may be evicted: a snapshot gone
// while its partition's watermark stays cannot be told from an aggregate
// with no events below the watermark, whose next events would start again
// at version 1. Configure maxmemory-policy noeviction (or a volatile-*
// policy, which never touches keys without expiry); NewRedis refuses the
// allkeys-* policies when the server lets it read the policy (CONFIG GET).
// Never delete one snapshot by hand; FLUSHALL (or losing Redis) is safe.
//
// Every method returns ctx's error once ctx is done. A ctx deadline bounds
// each read and write; a cancellation without deadline interrupts waits
// and retries but not a read in progress, which the read timeout bounds.
//
// A Redis is safe for concurrent use.
type Redis struct {
	c      *redis.Client
	own    bool
	prefix string
	addr   string
	// saves is, per partition key tag, the save count ('n' in its meta
	// key) this client last saw: at its claim, then after its saves. The
	// count only grows, so a store that shows less went back in time (a
	// restart from an older dump, a failover to a replica behind).
	mu    sync.Mutex
	saves map[string]int64
}

var (
	_ Store    = (*Redis)(nil)
	_ Resetter = (*Redis)(nil)
)

// NewRedis connects to Redis and checks that it answers, waiting no longer
// than the dial, write and read timeouts together. Errors name the
// server's address, never its password.
func NewRedis(ctx context.Context, cfg RedisConfig) (*Redis, error) {
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = defaultKeyPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("snapshot: redis: key prefix %q contains '{' or '}'", prefix)
	}
	if !strings.HasSuffix(prefix, ":") {
		prefix += ":"
	}
	r := &Redis{c: cfg.Client, prefix: prefix, saves: map[string]int64{}}
	if r.c == nil {
		opts, err := redisOptions(cfg)
		if err != nil {
			return nil, err
		}
		r.c, r.own = redis.NewClient(opts), true
	}
	o := r.c.Options()
	r.addr = o.Addr
	// One attempt's worth of waiting, unless ctx says less.
	if d := o.DialTimeout + o.WriteTimeout + o.ReadTimeout; o.DialTimeout > 0 && o.WriteTimeout > 0 && o.ReadTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if err := r.c.Ping(ctx).Err(); err != nil {
		if r.own {
			r.c.Close()
		}
		if re := redis.Error(nil); errors.As(err, &re) { // it answered: no
			return nil, fmt.Errorf("snapshot: redis at %s refused the client: %w", r.addr, err)
		}
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			return nil, fmt.Errorf("snapshot: redis at %s does not answer: %w: %w", r.addr, ctxErr, err)
		}
		if o.TLSConfig == nil && hungUp(err) {
			// A TLS port hangs up on a plaintext client's first command.
			return nil, fmt.Errorf("snapshot: redis at %s does not answer: %w (if it wants TLS, use a rediss:// URL)", r.addr, err)
		}
		return nil, fmt.Errorf("snapshot: redis at %s does not answer: %w", r.addr, err)
	}
	// Managed Redis often forbids CONFIG: then the policy is the operator's
	// to get right, as docs/deployment.md says.
	if cfg, err := r.c.ConfigGet(ctx, "maxmemory-policy").Result(); err == nil {
		if err := checkPolicy(cfg["maxmemory-policy"]); err != nil {
			if r.own {
				r.c.Close()
			}
			return nil, fmt.Errorf("snapshot: redis at %s: %w", r.addr, err)
		}
	}
	return r, nil
}

// hungUp reports whether err is the server closing the connection.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// ErrEvictionPolicy is returned by NewRedis for a server whose
// maxmemory-policy may evict keys without a TTL.
var ErrEvictionPolicy = errors.New("maxmemory-policy may evict snapshots")

// checkPolicy refuses the allkeys-* eviction policies: a snapshot evicted
// below the watermark cannot be told from an aggregate that has no events.
// Snapshot keys have no TTL, so noeviction and the volatile-* policies
// never touch them.
func checkPolicy(policy string) error {
	if strings.HasPrefix(policy, "allkeys-") {
		return fmt.Errorf("%w: it is %s; use noeviction (or a volatile-* policy)", ErrEvictionPolicy, policy)
	}
	return nil
}

func redisOptions(cfg RedisConfig) (*redis.Options, error) {
	if cfg.URL == "" {
		return nil, errors.New("snapshot: redis: no URL (and no Client) configured")
	}
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		// url.Parse quotes the whole URL, password included.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("snapshot: redis: invalid URL: %w", err)
	}
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS
		if cfg.TLS.ServerName == "" && !cfg.TLS.InsecureSkipVerify {
			opts.TLSConfig = cfg.TLS.Clone()
			opts.TLSConfig.ServerName, _, _ = net.SplitHostPort(opts.Addr)
		}
	}
	if cfg.Username != "" {
		opts.Username = cfg.Username
	}
	if cfg.Password != "" {
		opts.Password = cfg.Password
	}
	opts.DialTimeout = orDefault(cfg.DialTimeout, opts.DialTimeout, defaultDialTimeout)
	opts.ReadTimeout = orDefault(cfg.ReadTimeout, opts.ReadTimeout, defaultReadTimeout)
	opts.WriteTimeout = orDefault(cfg.WriteTimeout, opts.WriteTimeout, defaultWriteTimeout)
	// One dial per attempt, not go-redis's five: a dead Redis must fail
	// fast. Commands are still retried (max_retries, default 3) on a fresh
	// connection, within ctx's deadline.
	opts.DialerRetries = 1
	opts.ContextTimeoutEnabled = true
	return opts, nil
}

func orDefault(set, fromURL, def time.Duration) time.Duration {
	switch {
	case set != 0:
		return set
	case fromURL != 0:
		return fromURL
	}
	return def
}

// Close closes the client NewRedis made; a client given in
// RedisConfig.Client stays open.
func (r *Redis) Close() error {
	if !r.own {
		return nil
	}
	return r.c.Close()
}

func (r *Redis) tag(p Partition) (string, error) {
	if strings.ContainsAny(p.Topic, "{}") {
		return "", fmt.Errorf("topic %q contains '{' or '}'", p.Topic)
	}
	return r.prefix + "{" + p.Topic + "/" + strconv.FormatInt(int64(p.ID), 10) + "}:", nil
}

// fail wraps err, the failure of op on p, adding ctx's error when ctx is
// done, so that errors.Is finds it.
func (r *Redis) fail(ctx context.Context, op string, p Partition, err error) error {
	if errors.Is(err, ErrFenced) {
		return fmt.Errorf("snapshot: redis: %s %s: %w", op, p, err)
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("snapshot: redis at %s: %s %s: %w: %w", r.addr, op, p, ctxErr, err)
	}
	return fmt.Errorf("snapshot: redis at %s: %s %s: %w", r.addr, op, p, err)
}

// claimScript gives the partition of KEYS[1] a token greater than its
// stored one and than the server's clock in microseconds, and returns it
// with the watermark and the save count (nil when there is none). Writing
// after TIME needs effects replication: the default since Redis 5,
// switched on for 3.2+.
var claimScript = redis.NewScript(claimSource)

const claimSource = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local now = redis.call('TIME')
local token = tonumber(now[1]) * 1000000 + tonumber(now[2])
local stored = tonumber(redis.call('HGET', KEYS[1], 't') or '')
if stored and stored + 1 > token then token = stored + 1 end
token = string.format('%d', token)
redis.call('HSET', KEYS[1], 't', token)
return {token, redis.call('HGET', KEYS[1], 'w'), redis.call('HGET', KEYS[1], 'n')}
`

// saveScript stores snapshots if ARGV[1] is the token of KEYS[1]'s
// partition and its save count is at least ARGV[3], counts the save, and
// returns the new count; it writes nothing and returns -1 if the token is
// not current, -2 if the count is lower (the store went back in time).
// ARGV[2] is the watermark to advance to, or empty; then, for each
// KEYS[i>1], ARGV holds version, offset, fingerprint and state. A
// snapshot replaces a stored one unless that has a higher version (an
// unreadable one is always replaced).
var saveScript = redis.NewScript(saveSource)

const saveSource = `
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] then return -1 end
local count = tonumber(redis.call('HGET', KEYS[1], 'n') or '') or 0
if count < tonumber(ARGV[3]) then return -2 end
local gen = redis.call('HGET', KEYS[1], 'g') or '0'
for i = 2, #KEYS do
	local a = 4 + (i - 2) * 4
	local stored = tonumber(redis.call('HGET', KEYS[i], 'v') or '')
	if stored and (redis.call('HGET', KEYS[i], 'g') or '0') ~= gen then stored = nil end
	if not stored or stored <= tonumber(ARGV[a]) then
		redis.call('HSET', KEYS[i], 'v', ARGV[a], 'o', ARGV[a+1], 'f', ARGV[a+2], 's', ARGV[a+3], 'g', gen)
	end
end
if ARGV[2] ~= '' then
	local w = tonumber(redis.call('HGET', KEYS[1], 'w') or '')
	if not w or w < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], 'w', ARGV[2]) end
end
count = count + 1
redis.call('HSET', KEYS[1], 'n', string.format('%d', count))
return count
`

// resetScript makes the partition of KEYS[1] forget its watermark and
// snapshots if ARGV[1] is its token: it starts a new generation ('g'), and
// snapshots of another generation are as absent. It returns -1, changing
// nothing, if the token is not current.
var resetScript = redis.NewScript(resetSource)

const resetSource = `
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] then return -1 end
local gen = (tonumber(redis.call('HGET', KEYS[1], 'g') or '') or 0) + 1
redis.call('HSET', KEYS[1], 'g', string.format('%d', gen), 'w', '')
return gen
`

// Reset implements Resetter.
func (r *Redis) Reset(ctx context.Context, p Partition, token int64) error {
	const op = "reset"
	if err := ctx.Err(); err != nil {
		return r.fail(ctx, op, p, err)
	}
	tag, err := r.tag(p)
	if err != nil {
		return r.fail(ctx, op, p, err)
	}
	n, err := resetScript.Run(ctx, r.c, []string{tag + "meta"}, strconv.FormatInt(token, 10)).Int64()
	switch {
	case err != nil:
		return r.fail(ctx, op, p, scriptACL(resetSource, err))
	case n < 0:
		return r.fail(ctx, op, p, ErrFenced)
	}
	return nil
}

// errBackInTime is a save refused because the store's save count is below
// the one this client saw: treated as fenced (the caller rebuilds).
var errBackInTime = fmt.Errorf("%w: the store went back in time (restarted from an older dump?)", ErrFenced)

// seen returns the save count this client last saw for tag.
func (r *Redis) seen(tag string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.saves[tag]
}

// saw records count as the save count of tag, from a claim (reset) or a
// save (only up).
func (r *Redis) saw(tag string, count int64, claim bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if claim || count > r.saves[tag] {
		r.saves[tag] = count
	}
}

// generation reads a generation field, a string or nil ("0").
func generation(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return "0"
}

// parseCount reads a save count, a string or nil (0).
func parseCount(v any) (int64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("corrupt save count %q", s)
	}
	return n, nil
}

// Claim implements Store.
func (r *Redis) Claim(ctx context.Context, p Partition) (Mark, error) {
	const op = "claim"
	if err := ctx.Err(); err != nil {
		return Mark{}, r.fail(ctx, op, p, err)
	}
	tag, err := r.tag(p)
	if err != nil {
		return Mark{}, r.fail(ctx, op, p, err)
	}
	res, err := claimScript.Run(ctx, r.c, []string{tag + "meta"}).Slice()
	if err != nil {
		return Mark{}, r.fail(ctx, op, p, scriptACL(claimSource, err))
	}
	var mark Mark
	var count int64
	if len(res) == 3 {
		mark, err = parseMark(res[0], res[1])
		if err == nil {
			count, err = parseCount(res[2])
		}
	} else {
		err = fmt.Errorf("claim script returned %d values", len(res))
	}
	if err == nil && mark.Token == 0 {
		err = errors.New("claim script returned no token")
	}
	if err != nil {
		return Mark{}, r.fail(ctx, op, p, err)
	}
	r.saw(tag, count, true)
	return mark, nil
}

// parseMark reads a token and a watermark, each a string or nil.
func parseMark(t, w any) (Mark, error) {
	var m Mark
	var err error
	if s, ok := t.(string); ok {
		if m.Token, err = strconv.ParseInt(s, 10, 64); err != nil {
			return Mark{}, fmt.Errorf("corrupt token %q", s)
		}
	}
	if s, ok := w.(string); ok && s != "" { // "": forgotten by Reset
		if m.Watermark, err = strconv.ParseInt(s, 10, 64); err != nil {
			return Mark{}, fmt.Errorf("corrupt watermark %q", s)
		}
		m.HasWatermark = true
	}
	return m, nil
}

// Load implements Store. The ids are read in pipelined batches, p's Mark
// last: a store that lost data (or changed owner) while they were read
// shows it in the Mark. A stored snapshot that cannot be parsed makes Load
// fail, naming it.
func (r *Redis) Load(ctx context.Context, p Partition, ids []ulid.ULID) (map[ulid.ULID]Snapshot, Mark, error) {
	const op = "load"
	if err := ctx.Err(); err != nil {
		return nil, Mark{}, r.fail(ctx, op, p, err)
	}
	tag, err := r.tag(p)
	if err != nil {
		return nil, Mark{}, r.fail(ctx, op, p, err)
	}
	out := make(map[ulid.ULID]Snapshot, min(len(ids), 4*loadBatch))
	gens := make(map[ulid.ULID]string, len(out)) // of the snapshots in out
	// The saves seen before the store is read: the store, whose count
	// only grows, has at least those.
	seen := r.seen(tag)
	for start := 0; ; start += loadBatch {
		batch := ids[start:min(start+loadBatch, len(ids))]
		last := start+len(batch) == len(ids)
		cmds := make([]*redis.SliceCmd, len(batch))
		var meta *redis.SliceCmd
		_, err := r.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, id := range batch {
				cmds[i] = pipe.HMGet(ctx, tag+"s:"+id.String(), "v", "o", "f", "s", "g")
			}
			if last {
				meta = pipe.HMGet(ctx, tag+"meta", "t", "w", "n", "g")
			}
			return nil
		})
		if err != nil {
			return nil, Mark{}, r.fail(ctx, op, p, err)
		}
		for i, cmd := range cmds {
			v := cmd.Val()
			if len(v) != 5 {
				return nil, Mark{}, r.fail(ctx, op, p, fmt.Errorf("HMGET of 5 fields returned %d values", len(v)))
			}
			s, ok, err := parseSnapshot(batch[i], v[:4])
			if err != nil {
				return nil, Mark{}, r.fail(ctx, op, p, err)
			}
			if ok {
				out[s.AggregateID] = s
				gens[s.AggregateID] = generation(v[4])
			}
		}
		if last {
			v := meta.Val()
			if len(v) != 4 {
				return nil, Mark{}, r.fail(ctx, op, p, fmt.Errorf("HMGET of 4 fields returned %d values", len(v)))
			}
			// Snapshots of an earlier generation (before a Reset) are
			// not the partition's any more.
			for id, g := range gens {
				if g != generation(v[3]) {
					delete(out, id)
				}
			}
			mark, err := parseMark(v[0], v[1])
			var count int64
			if err == nil {
				count, err = parseCount(v[2])
			}
			if err != nil {
				return nil, Mark{}, r.fail(ctx, op, p, err)
			}
			if count < seen {
				// Fewer saves than this client saw: an older state of the
				// store, whose snapshots may be older than the ones it
				// wrote. As a store that lost its data, it has no owner.
				return out, Mark{}, nil
			}
			return out, mark, nil
		}
	}
}

// parseSnapshot reads the fields v, o, f, s of id's snapshot; ok is false
// when there is none. Errors quote the numbers, never the state.
func parseSnapshot(id ulid.ULID, vals []any) (s Snapshot, ok bool, err error) {
	if len(vals) != 4 || (vals[0] == nil && vals[1] == nil && vals[2] == nil && vals[3] == nil) {
		return Snapshot{}, false, nil
	}
	var str [4]string
	for i, v := range vals {
		if str[i], ok = v.(string); !ok {
			return Snapshot{}, false, fmt.Errorf("corrupt snapshot of %s: field %c missing", id, "vofs"[i])
		}
	}
	corrupt := func(field byte, val string) error {
		return fmt.Errorf("corrupt snapshot of %s: field %c: %.40q", id, field, val)
	}
	s = Snapshot{AggregateID: id, State: []byte(str[3])}
	if s.Version, err = strconv.ParseInt(str[0], 10, 64); err != nil {
		return Snapshot{}, false, corrupt('v', str[0])
	}
	if s.Offset, err = strconv.ParseInt(str[1], 10, 64); err != nil {
		return Snapshot{}, false, corrupt('o', str[1])
	}
	if s.Fingerprint, err = strconv.ParseUint(str[2], 10, 64); err != nil {
		return Snapshot{}, false, corrupt('f', str[2])
	}
	return s, true, nil
}

// saveCall is one call of saveScript.
type saveCall struct {
	keys  []string
	args  []any
	bytes int
}

// Save implements Store.
func (r *Redis) Save(ctx context.Context, p Partition, token int64, snaps []Snapshot, watermark int64) error {
	const op = "save"
	if err := ctx.Err(); err != nil {
		return r.fail(ctx, op, p, err)
	}
	tag, err := r.tag(p)
	if err != nil {
		return r.fail(ctx, op, p, err)
	}
	tok := strconv.FormatInt(token, 10)
	calls := chunk(tag, tok, snaps)
	last := &calls[len(calls)-1]
	last.args[1] = strconv.FormatInt(watermark, 10)
	// Each call counts one save: the store must have counted at least
	// those this client saw, and those before it in this Save.
	base := r.seen(tag)
	for i := range calls {
		calls[i].args[2] = strconv.FormatInt(base+int64(i), 10)
	}

	// Every chunk but the last, in pipelines of bounded size; then the
	// last, with the watermark, once all of them succeeded.
	for start := 0; start < len(calls)-1; {
		end, size := start, 0
		for end < len(calls)-1 && (end == start || size+calls[end].bytes <= pipelineBytes) {
			size += calls[end].bytes
			end++
		}
		if err := r.runSaves(ctx, tag, calls[start:end]); err != nil {
			return r.fail(ctx, op, p, err)
		}
		start = end
	}
	if err := r.runSaves(ctx, tag, calls[len(calls)-1:]); err != nil {
		return r.fail(ctx, op, p, err)
	}
	return nil
}

// chunk splits snaps into calls of saveScript, at least one (with no
// snapshot when snaps is empty), none with a watermark.
func chunk(tag, token string, snaps []Snapshot) []saveCall {
	newCall := func() saveCall {
		n := min(len(snaps), chunkSnapshots)
		c := saveCall{keys: make([]string, 0, 1+n), args: make([]any, 0, 3+4*n)}
		c.keys = append(c.keys, tag+"meta")
		c.args = append(c.args, token, "", "") // no watermark; the save count, set by Save
		return c
	}
	calls := []saveCall{newCall()}
	for _, s := range snaps {
		c := &calls[len(calls)-1]
		if len(c.keys) > 1 && (len(c.keys)-1 >= chunkSnapshots || c.bytes+len(s.State) > chunkBytes) {
			calls = append(calls, newCall())
			c = &calls[len(calls)-1]
		}
		c.keys = append(c.keys, tag+"s:"+s.AggregateID.String())
		c.args = append(c.args, strconv.FormatInt(s.Version, 10), strconv.FormatInt(s.Offset, 10),
			strconv.FormatUint(s.Fingerprint, 10), s.State)
		c.bytes += len(s.State) + 100
	}
	return calls
}

// runSaves runs calls of saveScript in one pipeline, by EVALSHA, and again
// by EVAL if the server's script cache does not have it (after a restart
// or SCRIPT FLUSH): the script is idempotent. It records the save counts
// they return.
func (r *Redis) runSaves(ctx context.Context, tag string, calls []saveCall) error {
	run := func(eval bool) ([]*redis.Cmd, error) {
		cmds := make([]*redis.Cmd, len(calls))
		_, err := r.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, c := range calls {
				if eval {
					cmds[i] = saveScript.Eval(ctx, pipe, c.keys, c.args...)
				} else {
					cmds[i] = saveScript.EvalSha(ctx, pipe, c.keys, c.args...)
				}
			}
			return nil
		})
		return cmds, err
	}
	cmds, err := run(false)
	if err != nil && slices.ContainsFunc(cmds, func(c *redis.Cmd) bool { return noScript(c.Err()) }) {
		cmds, err = run(true)
	}
	if err != nil {
		return scriptACL(saveSource, err)
	}
	for _, cmd := range cmds {
		switch n, err := cmd.Int64(); {
		case err != nil:
			return scriptACL(saveSource, err)
		case n == -2:
			return errBackInTime
		case n < 0:
			return ErrFenced
		default:
			r.saw(tag, n, false)
		}
	}
	return nil
}

func noScript(err error) bool {
	return errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")
}

// scriptLine finds the line of a script error: "... on @user_script:3.".
var scriptLine = regexp.MustCompile(`@user_script:(\d+)`)

// scriptCall finds the command a line of a script runs.
var scriptCall = regexp.MustCompile(`redis\.call\('(\w+)'`)

// scriptACL names the command that Redis's ACL refused inside the script
// of source: Redis says only "can't run this command" and the script's
// line, and an operator needs the command to fix the user's rules.
func scriptACL(source string, err error) error {
	if err == nil || !strings.Contains(err.Error(), "can't run this command") {
		return err
	}
	m := scriptLine.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(source, "\n")
	if n < 1 || n > len(lines) {
		return err
	}
	c := scriptCall.FindStringSubmatch(lines[n-1])
	if c == nil {
		return err
	}
	return fmt.Errorf("NOPERM: the Redis user may not run '%s' (called by a script; see the ACL in docs/deployment.md): %w", strings.ToLower(c[1]), err)
}
