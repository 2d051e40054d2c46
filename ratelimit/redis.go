package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Clock chooses whose clock a Redis store decides with.
type Clock int

const (
	// ServerClock (the default) reads the Redis server's TIME inside the
	// script, so every gateway replica decides on one clock: skew between
	// replicas cannot let a client through early or hold it back. The now
	// passed to Allow is ignored.
	ServerClock Clock = iota
	// CallerClock uses the now passed to Allow. Replicas whose clocks differ
	// by s then disagree by s on when a bucket refills: a replica ahead
	// admits up to s worth of extra requests early, one behind refuses for
	// up to s longer, and its TATs are stored s ahead. Meant for tests and
	// for a single replica with an injected clock.
	CallerClock
)

// RedisOptions configures a Redis store. The zero value means every
// default.
type RedisOptions struct {
	// Prefix starts every Redis key the store writes, so that several
	// gateways or environments can share a Redis. Rate keys are
	// Prefix+"r:"+key (a string holding the TAT in microseconds), quota keys
	// Prefix+"q:"+key (a hash: w = window start, c = count). Every key has a
	// TTL, the time until it carries no state, so Redis memory is bounded by
	// the keys active within one bucket refill or quota window. Default
	// DefaultRedisPrefix.
	Prefix string
	// FailOpen, when Redis cannot be reached or answers too slowly, allows
	// the request (availability over accuracy); when false (the default)
	// refuses it with RetryAfter 1s (FailClosedRetryAfter). Either way Allow
	// also returns an error wrapping ErrUnavailable, for the caller to log.
	FailOpen bool
	// Clock chooses the server's clock (ServerClock, the default) or the
	// caller's (CallerClock).
	Clock Clock
	// Timeout bounds each dial, read, write and wait for a pooled
	// connection, unless the URL sets dial_timeout, read_timeout,
	// write_timeout or pool_timeout. A rate limit check sits on every
	// request's path, so keep it short. Default 100ms.
	Timeout time.Duration
}

// Defaults of RedisOptions.
const (
	DefaultRedisPrefix  = "switchyard:ratelimit:"
	DefaultRedisTimeout = 100 * time.Millisecond
	// FailClosedRetryAfter is the RetryAfter of a request refused because
	// Redis was unavailable and FailOpen is false.
	FailClosedRetryAfter = time.Second
)

// WithDefaults returns o with zero fields set to their defaults.
func (o RedisOptions) WithDefaults() RedisOptions {
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultRedisTimeout
	}
	return o
}

// Validate reports every problem of o (after defaults) at once.
func (o RedisOptions) Validate() error {
	o = o.WithDefaults()
	var errs []error
	if o.Clock != ServerClock && o.Clock != CallerClock {
		errs = append(errs, fmt.Errorf("redis clock %d: expected server or caller", int(o.Clock)))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("redis timeout %v: expected a positive duration", o.Timeout))
	}
	return errors.Join(errs...)
}

// Redis is a Store kept in Redis, so that all gateway replicas pointed at
// one Redis share their limits. Each decision is one atomic Lua script
// (EVALSHA, falling back to EVAL when the script is not cached) computing
// the same GCRA and fixed-window steps as Memory, in microseconds. Safe for
// concurrent use.
type Redis struct {
	client   *redis.Client
	script   *redis.Script
	prefix   string
	failOpen bool
	clock    Clock
}

var _ Store = (*Redis)(nil)

// NewRedis returns a Redis store for a URL such as
// "redis://:password@127.0.0.1:6379/0?pool_size=20" (see redis.ParseURL;
// rediss:// for TLS). It does not contact Redis: a gateway starts even
// when Redis is down and then applies FailOpen per request; call Ping to
// check the connection at start. Command retries are off unless the URL
// sets max_retries, and a failed dial is not retried: a limiter should fail
// fast rather than hold requests. (go-redis logs dial failures through its
// own global logger; redis.SetLogger in main silences or redirects it.)
func NewRedis(url string, opts RedisOptions) (*Redis, error) {
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	ro, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parsing redis url %q: %w", redactURL(url), err)
	}
	if ro.DialTimeout == 0 {
		ro.DialTimeout = opts.Timeout
	}
	if ro.ReadTimeout == 0 {
		ro.ReadTimeout = opts.Timeout
	}
	if ro.WriteTimeout == 0 {
		ro.WriteTimeout = opts.Timeout
	}
	if ro.PoolTimeout == 0 {
		ro.PoolTimeout = opts.Timeout
	}
	if ro.MaxRetries == 0 {
		ro.MaxRetries = -1
	}
	ro.DialerRetries = 1 // one dial attempt; the pool probes in the background after repeated failures
	ro.ContextTimeoutEnabled = true
	return &Redis{
		client:   redis.NewClient(ro),
		script:   redis.NewScript(redisScript),
		prefix:   opts.Prefix,
		failOpen: opts.FailOpen,
		clock:    opts.Clock,
	}, nil
}

// redactURL hides a password in url for error messages.
func redactURL(url string) string {
	for i := 0; i+3 <= len(url); i++ {
		if url[i:i+3] == "://" {
			rest := url[i+3:]
			for j := 0; j < len(rest) && rest[j] != '/'; j++ {
				if rest[j] == '@' {
					return url[:i+3] + "xxx" + rest[j:]
				}
			}
			break
		}
	}
	return url
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("pinging redis at %s: %w: %w", r.client.Options().Addr, ErrUnavailable, err)
	}
	return nil
}

// Close closes the connections to Redis. Allow must not be called after.
func (r *Redis) Close() error { return r.client.Close() }

// Allow implements Store. See RedisOptions.FailOpen for what happens when
// Redis is unavailable.
func (r *Redis) Allow(ctx context.Context, key string, lim Limit, now time.Time) (Decision, error) {
	key = compactKey(key)
	iv, err := checkLimit(lim)
	if err != nil {
		return Decision{}, err
	}
	nowArg := ""
	if r.clock == CallerClock {
		nowArg = strconv.FormatInt(now.UnixMicro(), 10)
	}
	var (
		full string
		arg3 int64
		arg4 int
		d    Decision
	)
	if lim.Kind == KindQuota {
		full, arg3, arg4 = r.prefix+"q:"+key, int64(lim.Rate.Per), lim.Rate.N
		d.Limit = lim.Rate.N
	} else {
		full, arg3, arg4 = r.prefix+"r:"+key, int64(iv), lim.burst()
		d.Limit = lim.burst()
	}
	res, err := r.script.Run(ctx, r.client, []string{full},
		nowArg, lim.Kind.String(), arg3, arg4, int64(lim.MaxWait)).Int64Slice()
	if err == nil && len(res) != 5 {
		err = fmt.Errorf("unexpected script reply %v", res)
	}
	if err != nil {
		if r.failOpen {
			d.Allowed = true
		} else {
			d.RetryAfter, d.ResetAfter = FailClosedRetryAfter, FailClosedRetryAfter
		}
		return d, fmt.Errorf("rate limiting %q in redis at %s: %w: %w", key, r.client.Options().Addr, ErrUnavailable, err)
	}
	d.Allowed = res[0] == 1
	d.Remaining = int(res[1])
	d.ResetAfter = time.Duration(res[2]) * time.Microsecond
	d.RetryAfter = time.Duration(res[3]) * time.Microsecond
	d.Delay = time.Duration(res[4]) * time.Microsecond
	return d, nil
}

// redisScript decides one request atomically; it mirrors gcra and
// fixedWindow. Times are microseconds (Lua numbers are doubles: Unix
// nanoseconds would lose precision, microseconds are exact to 2^53).
//
//	KEYS[1]  the state key
//	ARGV[1]  now in Unix microseconds, or "" to read the server's TIME
//	ARGV[2]  "rate" or "quota"
//	ARGV[3]  rate: emission interval Per/N; quota: window length (ns)
//	ARGV[4]  rate: burst; quota: N
//	ARGV[5]  rate: max wait for a reservation (ns)
//
// State: rate, a string holding the TAT ("%.17g" µs); quota, a hash with
// w (window start, µs) and c (count). Both expire when they stop carrying
// state (plus a millisecond).
//
// Reply: {allowed 0|1, remaining, reset µs, retry-after µs, delay µs}.
const redisScript = `
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
if ARGV[2] == 'rate' then
  local iv = tonumber(ARGV[3]) / 1000
  local width = tonumber(ARGV[4]) * iv
  local maxwait = tonumber(ARGV[5]) / 1000
  local tat = tonumber(redis.call('GET', KEYS[1]))
  if tat == nil or tat < now then tat = now end
  local newtat = tat + iv
  local wait = newtat - width - now
  if wait > 0 and wait > maxwait then
    return {0, 0, math.ceil(tat - now), math.ceil(wait), 0}
  end
  local remaining, delay = 0, 0
  if wait > 0 then
    delay = math.ceil(wait)
  else
    remaining = math.floor((now + width - newtat) / iv + 1e-9)
  end
  redis.call('SET', KEYS[1], string.format('%.17g', newtat), 'PX', math.ceil((newtat - now) / 1000) + 1)
  return {1, remaining, math.ceil(newtat - now), 0, delay}
end
local per = tonumber(ARGV[3]) / 1000
local n = tonumber(ARGV[4])
local ws = now - math.fmod(now, per)
local v = redis.call('HMGET', KEYS[1], 'w', 'c')
local c = 0
if v[1] then
  local w = tonumber(v[1])
  if w > ws then ws = w end -- the clock stepped back across a window boundary: keep counting
  if w == ws then c = tonumber(v[2]) end
end
local reset = ws + per - now
if c >= n then
  return {0, 0, math.ceil(reset), math.ceil(reset), 0}
end
c = c + 1
redis.call('HSET', KEYS[1], 'w', string.format('%.17g', ws), 'c', c)
redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000) + 1)
return {1, n - c, math.ceil(reset), 0, 0}
`
