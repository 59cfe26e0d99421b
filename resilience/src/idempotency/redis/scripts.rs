//! The Lua scripts of the Redis store, one per operation.
//!
//! Each script touches exactly one key, the record's hash, so it runs
//! atomically on one node (and on one slot of a Cluster): a claim's read
//! and write cannot interleave with another claim's, which is what makes
//! "exactly one winner" hold without locks or `WATCH`.
//!
//! Record fields: `state` (`run`, `done` or `free` after a release), `fp`
//! (the fingerprint, 32 raw bytes), `gen` (the claim's generation, decimal),
//! `deadline` (the lease's end, server time in microseconds) and `resp`
//! (the encoded saved response). Time is the server's (`TIME`), so clients'
//! clocks never decide whether a lease ended. Generations are server
//! microseconds too, raised above the record's previous generation if the
//! clock has not moved past it, so a record never hands out one twice; a
//! released record stays as a `free` tombstone to remember its last one.
//!
//! Numbers are formatted with `%.0f`: Lua 5.1 numbers are doubles, exact up
//! to 2^53 (microseconds since 1970 stay below it until the year 2255),
//! and `tostring` would print them in exponent notation.

use std::sync::LazyLock;

use ::redis::Script;

/// Shared prelude: the server's clock in microseconds, and exact decimals.
macro_rules! prelude {
    () => {
        r#"
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function dec(n) return string.format('%.0f', n) end
"#
    };
}

/// `KEYS[1]` record; `ARGV` fingerprint, lease (µs), retention (ms).
/// Returns `{tag, payload}`: `acquired` + generation, `busy` + milliseconds
/// until the lease ends, `done` + the saved response, `mismatch` + "".
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local key, fp = KEYS[1], ARGV[1]
local lease, retention = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_us()
local rec = redis.call('HMGET', key, 'state', 'fp', 'gen', 'deadline', 'resp')
local gen = now
if rec[1] then
  if rec[1] ~= 'free' then
    if rec[2] ~= fp then return {'mismatch', ''} end
    if rec[1] == 'done' then return {'done', rec[5]} end
    local left = tonumber(rec[4]) - now
    if left > 0 then return {'busy', dec(math.ceil(left / 1000))} end
  end
  -- Released, or its lease ran out: a new claim under a new generation.
  gen = math.max(now, tonumber(rec[3]) + 1)
end
redis.call('HSET', key, 'state', 'run', 'fp', fp, 'gen', dec(gen), 'deadline', dec(now + lease))
redis.call('PEXPIRE', key, retention)
return {'acquired', dec(gen)}
"#
    ))
});

/// The fence every holder's operation starts with: the record is in
/// progress under the token's generation, else the script returns 0.
macro_rules! fence {
    () => {
        r#"
local key, gen = KEYS[1], ARGV[1]
local rec = redis.call('HMGET', key, 'state', 'gen')
if rec[1] ~= 'run' or rec[2] ~= gen then return 0 end
"#
    };
}

/// `KEYS[1]` record; `ARGV` generation, encoded response, retention (ms).
/// Returns 1 if saved, 0 if the token is stale.
pub(super) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        fence!(),
        r#"
redis.call('HSET', key, 'state', 'done', 'resp', ARGV[2])
redis.call('HDEL', key, 'deadline')
redis.call('PEXPIRE', key, tonumber(ARGV[3]))
return 1
"#
    ))
});

/// `KEYS[1]` record; `ARGV` generation. Returns 1 if released, 0 if stale.
/// The record stays, `free`, until its retention ends, so that the next
/// claim's generation is above the released one.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        fence!(),
        r#"
redis.call('HSET', key, 'state', 'free')
redis.call('HDEL', key, 'fp', 'deadline')
return 1
"#
    ))
});

/// `KEYS[1]` record; `ARGV` generation, lease (µs). Returns 1 if renewed,
/// 0 if stale. The key's TTL is raised to the lease if shorter, so a
/// record in progress never expires before its deadline.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        fence!(),
        r#"
local lease = tonumber(ARGV[2])
redis.call('HSET', key, 'deadline', dec(now_us() + lease))
local lease_ms = math.ceil(lease / 1000)
if redis.call('PTTL', key) < lease_ms then redis.call('PEXPIRE', key, lease_ms) end
return 1
"#
    ))
});
