//! Per-peer timer state machine (WireGuard whitepaper §6), sans-IO.
//!
//! The peer feeds events (`on_*`, each with the caller's monotonic `now`) and calls
//! [`Timers::tick`] at or after [`Timers::next_deadline`]; `tick` returns the [`Actions`] that
//! are due. Nothing here allocates, sleeps or reads a clock.
//!
//! Semantics follow the reference implementations (Linux `timers.c`, wireguard-go
//! `timers.go`):
//! - *Retransmit handshake*: armed for Rekey-Timeout + jitter by every initiation sent; when
//!   it fires the initiation is retried, up to `Rekey-Attempt-Time / Rekey-Timeout` (= 18)
//!   retries; at the next expiry (the 20th initiation's deadline, ≈ 100 s after the first)
//!   the handshake is given up, and key zeroing is armed if it was not already.
//! - *New handshake*: armed by data sent (if not already armed) for Keepalive-Timeout +
//!   Rekey-Timeout + jitter; cancelled by any authenticated packet received; when it fires a
//!   fresh handshake is initiated ("we stopped hearing back").
//! - *Passive keepalive*: armed by data received (if not already armed) for
//!   Keepalive-Timeout; cancelled by any authenticated packet sent. If more data arrived
//!   while it was armed, it is armed once more after firing.
//! - *Persistent keepalive*: re-armed for the configured interval by every authenticated
//!   packet sent or received.
//! - *Zero keys*: armed for 3 × Reject-After-Time by every new session; when it fires, all
//!   key material of the peer must be erased.
//! - *Key freshness*: data sent on a session we initiated that is older than
//!   Rekey-After-Time, or data received on such a session older than Reject-After-Time −
//!   Keepalive-Timeout − Rekey-Timeout (once per handshake), request a new handshake.
//!   (Rekey-After-Messages is checked by [`Keypair::should_rekey_on_send`]; the peer then
//!   calls [`Timers::request_handshake`].)
//! - A non-retry initiation is never sent less than Rekey-Timeout after the previous one; a
//!   request that hits this limit is dropped (the initiation in flight covers it).
//!
//! [`Keypair::should_rekey_on_send`]: crate::transport::Keypair::should_rekey_on_send

use crate::transport::constants;
use core::time::Duration;
use rand_core::RngCore;

/// Every timing constant of the protocol. `Default` is the whitepaper; tests and soak runs
/// may compress the times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Rekey-After-Messages (2^60).
    pub rekey_after_messages: u64,
    /// Reject-After-Messages (2^64 − 2^13 − 1).
    pub reject_after_messages: u64,
    /// Rekey-After-Time (120 s).
    pub rekey_after_time: Duration,
    /// Reject-After-Time (180 s).
    pub reject_after_time: Duration,
    /// Rekey-Attempt-Time (90 s).
    pub rekey_attempt_time: Duration,
    /// Rekey-Timeout (5 s).
    pub rekey_timeout: Duration,
    /// Largest random jitter added to Rekey-Timeout (333 ms).
    pub rekey_timeout_jitter_max: Duration,
    /// Keepalive-Timeout (10 s).
    pub keepalive_timeout: Duration,
    /// Persistent keepalive interval, `None` = off (the default).
    pub persistent_keepalive: Option<Duration>,
    /// Erase keys after this long without a new session (3 × Reject-After-Time = 540 s).
    pub zero_keys_after: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            rekey_after_messages: constants::REKEY_AFTER_MESSAGES,
            reject_after_messages: constants::REJECT_AFTER_MESSAGES,
            rekey_after_time: constants::REKEY_AFTER_TIME,
            reject_after_time: constants::REJECT_AFTER_TIME,
            rekey_attempt_time: constants::REKEY_ATTEMPT_TIME,
            rekey_timeout: constants::REKEY_TIMEOUT,
            rekey_timeout_jitter_max: constants::REKEY_TIMEOUT_JITTER_MAX,
            keepalive_timeout: constants::KEEPALIVE_TIMEOUT,
            persistent_keepalive: None,
            zero_keys_after: constants::ZERO_KEYS_AFTER,
        }
    }
}

impl TimerConfig {
    /// Retries of one handshake before giving up: Rekey-Attempt-Time / Rekey-Timeout (18).
    pub fn max_handshake_attempts(&self) -> u32 {
        let t = self.rekey_timeout.as_nanos().max(1);
        u32::try_from(self.rekey_attempt_time.as_nanos() / t).unwrap_or(u32::MAX)
    }

    /// Session age from which received data on a session we initiated triggers a
    /// last-minute handshake: Reject-After-Time − Keepalive-Timeout − Rekey-Timeout (165 s).
    pub fn last_minute_rekey_age(&self) -> Duration {
        self.reject_after_time
            .saturating_sub(self.keepalive_timeout)
            .saturating_sub(self.rekey_timeout)
    }
}

/// What the peer must do now, as returned by [`Timers::tick`]. Several may be set at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions {
    /// Send a handshake initiation (then call [`Timers::on_handshake_initiated`]).
    pub send_initiation: bool,
    /// The initiation is a retry of the handshake in progress (else a fresh handshake).
    pub initiation_is_retry: bool,
    /// Send a keepalive (an empty transport packet) on the current session; without a
    /// session, queue it and request a handshake as for any other packet.
    pub send_keepalive: bool,
    /// Erase all session keys, the handshake state and queued packets of this peer.
    pub zero_keys: bool,
    /// The handshake was given up after the last retry; drop packets queued for it.
    pub handshake_gave_up: bool,
}

impl Actions {
    /// True if nothing is to be done.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timer {
    at: Duration,
    /// Random jitter still to be added (drawn at the next tick, which has the RNG).
    jitter_pending: bool,
}

impl Timer {
    const fn at(at: Duration) -> Option<Self> {
        Some(Self {
            at,
            jitter_pending: false,
        })
    }
    const fn jittered(at: Duration) -> Option<Self> {
        Some(Self {
            at,
            jitter_pending: true,
        })
    }
}

/// Takes a timer that is due at `now` (its jitter already applied).
fn take_due(t: &mut Option<Timer>, now: Duration) -> bool {
    match t {
        Some(x) if !x.jitter_pending && x.at <= now => {
            *t = None;
            true
        }
        _ => false,
    }
}

/// The timer state of one peer.
#[derive(Debug, Clone)]
pub struct Timers {
    config: TimerConfig,
    retransmit_handshake: Option<Timer>,
    send_keepalive: Option<Timer>,
    new_handshake: Option<Timer>,
    zero_keys: Option<Timer>,
    persistent_keepalive: Option<Timer>,
    handshake_attempts: u32,
    need_another_keepalive: bool,
    /// The keepalive timer was re-armed by `tick` together with a keepalive action; the
    /// send of that keepalive must not cancel it (the reference code cancels, then re-arms).
    keepalive_survives_next_send: bool,
    sent_last_minute_handshake: bool,
    last_initiation_sent: Option<Duration>,
    last_handshake: Option<Duration>,
    pending_new_initiation: bool,
    /// (created, is_initiator) of the current session.
    session: Option<(Duration, bool)>,
}

impl Timers {
    /// Idle timers for a peer with `config`.
    pub fn new(config: TimerConfig) -> Self {
        Self {
            config,
            retransmit_handshake: None,
            send_keepalive: None,
            new_handshake: None,
            zero_keys: None,
            persistent_keepalive: None,
            handshake_attempts: 0,
            need_another_keepalive: false,
            keepalive_survives_next_send: false,
            sent_last_minute_handshake: false,
            last_initiation_sent: None,
            last_handshake: None,
            pending_new_initiation: false,
            session: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// Changes the persistent keepalive interval. Turning it on sends a keepalive at the next
    /// tick, as the reference implementations do when it is configured.
    pub fn set_persistent_keepalive(&mut self, interval: Option<Duration>, now: Duration) {
        self.config.persistent_keepalive = interval;
        self.persistent_keepalive = interval.and_then(|_| Timer::at(now));
    }

    /// Retries sent for the handshake in progress.
    pub fn handshake_attempts(&self) -> u32 {
        self.handshake_attempts
    }

    /// When the last handshake completed.
    pub fn last_handshake(&self) -> Option<Duration> {
        self.last_handshake
    }

    /// True while an initiation awaits its response (the retransmit timer is armed).
    pub fn is_handshaking(&self) -> bool {
        self.retransmit_handshake.is_some()
    }

    /// The earliest time at which [`tick`](Self::tick) may have something to do
    /// (`Duration::ZERO` = at once). `None` = nothing armed.
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.pending_new_initiation {
            return Some(Duration::ZERO);
        }
        [
            self.retransmit_handshake,
            self.send_keepalive,
            self.new_handshake,
            self.zero_keys,
            self.persistent_keepalive,
        ]
        .into_iter()
        .flatten()
        .map(|t| t.at)
        .min()
    }

    // ---- events ------------------------------------------------------------------------

    /// Asks for a fresh (non-retry) handshake, e.g. because data is queued without a
    /// session or [`Keypair::should_rekey_on_send`](crate::transport::Keypair::should_rekey_on_send)
    /// said so. Emitted by the next [`tick`](Self::tick) unless rate-limited.
    pub fn request_handshake(&mut self, _now: Duration) {
        self.pending_new_initiation = true;
    }

    /// A transport packet carrying data (not a keepalive) was sent.
    pub fn on_data_sent(&mut self, now: Duration) {
        if self.new_handshake.is_none() {
            self.new_handshake =
                Timer::jittered(now + self.config.keepalive_timeout + self.config.rekey_timeout);
        }
        if let Some((created, true)) = self.session
            && now.saturating_sub(created) >= self.config.rekey_after_time
        {
            self.request_handshake(now);
        }
    }

    /// A transport packet carrying data (not a keepalive) was received and authenticated.
    pub fn on_data_received(&mut self, now: Duration) {
        if self.send_keepalive.is_none() {
            self.send_keepalive = Timer::at(now + self.config.keepalive_timeout);
        } else {
            self.need_another_keepalive = true;
        }
        if let Some((created, true)) = self.session
            && !self.sent_last_minute_handshake
            && now.saturating_sub(created) >= self.config.last_minute_rekey_age()
        {
            self.sent_last_minute_handshake = true;
            self.request_handshake(now);
        }
    }

    /// Any authenticated packet (transport data, keepalive or handshake message) was sent.
    pub fn on_authenticated_packet_sent(&mut self, now: Duration) {
        if self.keepalive_survives_next_send {
            self.keepalive_survives_next_send = false;
        } else {
            self.send_keepalive = None;
        }
        self.traversal(now);
    }

    /// Any authenticated packet (transport data, keepalive or handshake message) was
    /// received.
    pub fn on_authenticated_packet_received(&mut self, now: Duration) {
        self.new_handshake = None;
        self.traversal(now);
    }

    fn traversal(&mut self, now: Duration) {
        if let Some(interval) = self.config.persistent_keepalive {
            self.persistent_keepalive = Timer::at(now + interval);
        }
    }

    /// A handshake initiation was sent (call it even if the send failed: the retry timer
    /// must run). Counts as an authenticated packet sent.
    pub fn on_handshake_initiated(&mut self, now: Duration) {
        self.last_initiation_sent = Some(now);
        self.pending_new_initiation = false;
        self.retransmit_handshake = Timer::jittered(now + self.config.rekey_timeout);
        self.on_authenticated_packet_sent(now);
    }

    /// The handshake completed (initiator: response consumed; responder: first transport
    /// packet received on the new session).
    pub fn on_handshake_complete(&mut self, now: Duration) {
        self.retransmit_handshake = None;
        self.handshake_attempts = 0;
        self.sent_last_minute_handshake = false;
        self.last_handshake = Some(now);
    }

    /// New session keys were derived (either role).
    pub fn on_session_derived(&mut self, now: Duration, is_initiator: bool) {
        self.zero_keys = Timer::at(now + self.config.zero_keys_after);
        self.session = Some((now, is_initiator));
    }

    // ---- tick --------------------------------------------------------------------------

    fn jitter(&self, rng: &mut impl RngCore) -> Duration {
        let max = u64::try_from(self.config.rekey_timeout_jitter_max.as_nanos()).unwrap_or(0);
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.next_u64() % (max + 1))
    }

    fn apply_jitter(&mut self, rng: &mut impl RngCore) {
        for i in 0..2 {
            let j = self.jitter(rng);
            let t = if i == 0 {
                &mut self.retransmit_handshake
            } else {
                &mut self.new_handshake
            };
            if let Some(x) = t
                && x.jitter_pending
            {
                x.at += j;
                x.jitter_pending = false;
            }
        }
    }

    fn initiation_allowed(&self, now: Duration) -> bool {
        self.last_initiation_sent
            .is_none_or(|t| now.saturating_sub(t) >= self.config.rekey_timeout)
    }

    /// Runs every timer due at `now` and returns what to do.
    pub fn tick(&mut self, now: Duration, rng: &mut impl RngCore) -> Actions {
        self.apply_jitter(rng);
        let mut a = Actions::default();

        if take_due(&mut self.retransmit_handshake, now) {
            if self.handshake_attempts > self.config.max_handshake_attempts() {
                a.handshake_gave_up = true;
                self.send_keepalive = None;
                self.need_another_keepalive = false;
                if self.zero_keys.is_none() {
                    self.zero_keys = Timer::at(now + self.config.zero_keys_after);
                }
            } else {
                self.handshake_attempts += 1;
                a.send_initiation = true;
                a.initiation_is_retry = true;
            }
        }

        if take_due(&mut self.send_keepalive, now) {
            a.send_keepalive = true;
            if self.need_another_keepalive {
                self.need_another_keepalive = false;
                self.send_keepalive = Timer::at(now + self.config.keepalive_timeout);
                self.keepalive_survives_next_send = true;
            }
        }

        if take_due(&mut self.new_handshake, now) {
            self.pending_new_initiation = true;
        }

        if take_due(&mut self.zero_keys, now) {
            a.zero_keys = true;
            self.session = None;
        }

        if take_due(&mut self.persistent_keepalive, now)
            && self.config.persistent_keepalive.is_some()
        {
            a.send_keepalive = true;
        }

        if self.pending_new_initiation {
            self.pending_new_initiation = false;
            if !a.send_initiation && !a.handshake_gave_up && self.initiation_allowed(now) {
                self.handshake_attempts = 0;
                a.send_initiation = true;
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const MS: Duration = Duration::from_millis(1);
    const STEP: Duration = Duration::from_millis(10);

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    /// A fake peer around `Timers`: ticks every 10 ms and reacts to actions the way the
    /// peer module will (initiations and keepalives count as authenticated sends).
    struct Sim {
        t: Timers,
        now: Duration,
        rng: ChaCha20Rng,
        log: Vec<(Duration, Actions)>,
    }

    impl Sim {
        fn new(config: TimerConfig, seed: u64) -> Self {
            Self {
                t: Timers::new(config),
                now: Duration::ZERO,
                rng: ChaCha20Rng::seed_from_u64(seed),
                log: Vec::new(),
            }
        }
        /// Advances to `until`, reacting to every action.
        fn run_until(&mut self, until: Duration) {
            while self.now < until {
                self.now += STEP;
                let a = self.t.tick(self.now, &mut self.rng);
                if a.send_initiation {
                    self.t.on_handshake_initiated(self.now);
                }
                if a.send_keepalive {
                    self.t.on_authenticated_packet_sent(self.now);
                }
                if !a.is_empty() {
                    self.log.push((self.now, a));
                }
            }
        }
        fn times(&self, f: impl Fn(&Actions) -> bool) -> Vec<Duration> {
            self.log
                .iter()
                .filter(|(_, a)| f(a))
                .map(|(t, _)| *t)
                .collect()
        }
    }

    #[test]
    fn default_is_whitepaper() {
        let c = TimerConfig::default();
        assert_eq!(c.rekey_after_messages, 1 << 60);
        assert_eq!(c.reject_after_messages, u64::MAX - 8192);
        assert_eq!(c.rekey_after_time, s(120.0));
        assert_eq!(c.reject_after_time, s(180.0));
        assert_eq!(c.rekey_attempt_time, s(90.0));
        assert_eq!(c.rekey_timeout, s(5.0));
        assert_eq!(c.rekey_timeout_jitter_max, 333 * MS);
        assert_eq!(c.keepalive_timeout, s(10.0));
        assert_eq!(c.persistent_keepalive, None);
        assert_eq!(c.zero_keys_after, s(540.0));
        assert_eq!(c.max_handshake_attempts(), 18);
        assert_eq!(c.last_minute_rekey_age(), s(165.0));
    }

    #[test]
    fn idle_peer_does_nothing() {
        let mut sim = Sim::new(TimerConfig::default(), 1);
        assert_eq!(sim.t.next_deadline(), None);
        sim.run_until(s(1000.0));
        assert!(sim.log.is_empty(), "{:?}", sim.log);
    }

    #[test]
    fn handshake_retry_then_give_up() {
        for seed in 0..5 {
            let mut sim = Sim::new(TimerConfig::default(), seed);
            sim.t.request_handshake(Duration::ZERO);
            sim.run_until(s(200.0));
            let inits = sim.times(|a| a.send_initiation);
            let retries = sim.times(|a| a.initiation_is_retry);
            // First initiation at once, then 18 retries...
            assert_eq!(inits.len(), 20, "seed {seed}: {inits:?}");
            assert_eq!(retries.len(), 19);
            assert_eq!(inits[0], STEP);
            for w in inits.windows(2) {
                let gap = w[1] - w[0];
                // Rekey-Timeout + jitter (0..=333 ms), quantised to the 10 ms tick.
                assert!(
                    gap >= s(5.0) && gap <= s(5.0) + 333 * MS + STEP,
                    "gap {gap:?}"
                );
            }
            // ...and given up at the deadline of the 20th initiation.
            let gave_up = sim.times(|a| a.handshake_gave_up);
            assert_eq!(gave_up.len(), 1);
            let g = gave_up[0] - inits[19];
            assert!(g >= s(5.0) && g <= s(5.0) + 333 * MS + STEP, "{g:?}");
            assert!(gave_up[0] >= s(100.0) && gave_up[0] <= s(100.0 + 20.0 * 0.334));
            // Giving up arms key zeroing 540 s later.
            sim.run_until(gave_up[0] + s(545.0));
            let z = sim.times(|a| a.zero_keys);
            assert_eq!(z.len(), 1);
            assert!(z[0] >= gave_up[0] + s(540.0) && z[0] <= gave_up[0] + s(540.0) + STEP);
        }
    }

    #[test]
    fn jitter_is_used() {
        // Different seeds give different retry times, all within [5 s, 5.333 s].
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let mut sim = Sim::new(TimerConfig::default(), seed);
            sim.t.on_handshake_initiated(Duration::ZERO);
            sim.run_until(s(6.0));
            let r = sim.times(|a| a.send_initiation);
            assert_eq!(r.len(), 1);
            assert!(r[0] >= s(5.0) && r[0] <= s(5.34), "{:?}", r[0]);
            seen.insert(r[0]);
        }
        assert!(seen.len() > 5, "{seen:?}");
    }

    #[test]
    fn completed_handshake_stops_retries() {
        let mut sim = Sim::new(TimerConfig::default(), 3);
        sim.t.request_handshake(Duration::ZERO);
        sim.run_until(s(4.9));
        assert!(sim.t.is_handshaking());
        sim.t.on_handshake_complete(sim.now);
        sim.t.on_session_derived(sim.now, true);
        sim.run_until(s(60.0));
        assert_eq!(sim.times(|a| a.send_initiation).len(), 1);
        assert_eq!(sim.t.handshake_attempts(), 0);
        assert!(!sim.t.is_handshaking());
    }

    #[test]
    fn zero_keys_at_540s() {
        let mut sim = Sim::new(TimerConfig::default(), 4);
        sim.t.on_session_derived(Duration::ZERO, false);
        sim.run_until(s(539.99));
        assert!(sim.log.is_empty());
        sim.run_until(s(540.0));
        assert_eq!(sim.times(|a| a.zero_keys), vec![s(540.0)]);
        // A new session postpones it.
        let mut sim = Sim::new(TimerConfig::default(), 4);
        sim.t.on_session_derived(Duration::ZERO, false);
        sim.run_until(s(300.0));
        sim.t.on_session_derived(sim.now, false);
        sim.run_until(s(839.0));
        assert!(sim.times(|a| a.zero_keys).is_empty());
        sim.run_until(s(841.0));
        assert_eq!(sim.times(|a| a.zero_keys), vec![s(840.0)]);
    }

    #[test]
    fn new_handshake_when_data_gets_no_reply() {
        let mut sim = Sim::new(TimerConfig::default(), 5);
        sim.t.on_session_derived(Duration::ZERO, false);
        sim.t.on_data_sent(Duration::ZERO);
        sim.run_until(s(14.99));
        assert!(sim.log.is_empty());
        sim.run_until(s(15.5));
        let i = sim.times(|a| a.send_initiation && !a.initiation_is_retry);
        assert_eq!(i.len(), 1);
        assert!(i[0] >= s(15.0) && i[0] <= s(15.34), "{i:?}");
        // Sending more data does not push the deadline out (armed only if not armed).
        let mut sim = Sim::new(TimerConfig::default(), 5);
        for k in 0..14 {
            sim.t.on_data_sent(s(f64::from(k)));
            sim.run_until(s(f64::from(k)));
        }
        sim.run_until(s(15.5));
        assert_eq!(sim.times(|a| a.send_initiation).len(), 1);
    }

    #[test]
    fn reply_cancels_new_handshake() {
        let mut sim = Sim::new(TimerConfig::default(), 6);
        sim.t.on_data_sent(Duration::ZERO);
        sim.run_until(s(14.0));
        sim.t.on_authenticated_packet_received(sim.now);
        sim.run_until(s(60.0));
        assert!(sim.log.is_empty(), "{:?}", sim.log);
    }

    #[test]
    fn passive_keepalive_after_receiving() {
        let mut sim = Sim::new(TimerConfig::default(), 7);
        sim.t.on_data_received(Duration::ZERO);
        sim.run_until(s(9.99));
        assert!(sim.log.is_empty());
        sim.run_until(s(30.0));
        assert_eq!(sim.times(|a| a.send_keepalive), vec![s(10.0)]);
        // Sending something ourselves first cancels it.
        let mut sim = Sim::new(TimerConfig::default(), 7);
        sim.t.on_data_received(Duration::ZERO);
        sim.run_until(s(5.0));
        sim.t.on_authenticated_packet_sent(sim.now);
        sim.run_until(s(30.0));
        assert!(sim.log.is_empty());
    }

    #[test]
    fn another_keepalive_when_more_data_arrived() {
        let mut sim = Sim::new(TimerConfig::default(), 8);
        sim.t.on_data_received(Duration::ZERO);
        sim.run_until(s(3.0));
        sim.t.on_data_received(sim.now); // while armed: need another
        sim.run_until(s(40.0));
        assert_eq!(sim.times(|a| a.send_keepalive), vec![s(10.0), s(20.0)]);
    }

    #[test]
    fn persistent_keepalive() {
        let config = TimerConfig {
            persistent_keepalive: Some(s(25.0)),
            ..TimerConfig::default()
        };
        let mut sim = Sim::new(config, 9);
        sim.t
            .set_persistent_keepalive(Some(s(25.0)), Duration::ZERO);
        sim.run_until(s(80.0));
        // At once, then 25 s after each keepalive sent (each one re-arms the timer).
        assert_eq!(
            sim.times(|a| a.send_keepalive),
            vec![STEP, STEP + s(25.0), STEP + s(50.0), STEP + s(75.0)]
        );
        // Traffic in between re-arms it.
        sim.run_until(s(90.0));
        sim.t.on_authenticated_packet_received(sim.now);
        sim.run_until(s(114.0));
        assert_eq!(sim.times(|a| a.send_keepalive).len(), 4);
        sim.run_until(s(116.0));
        assert_eq!(sim.times(|a| a.send_keepalive).last(), Some(&s(115.0)));
        // Off: nothing more.
        sim.t.set_persistent_keepalive(None, sim.now);
        sim.run_until(s(300.0));
        assert_eq!(sim.times(|a| a.send_keepalive).len(), 5);
    }

    #[test]
    fn rekey_after_time_initiator_only() {
        for (initiator, want) in [(true, 1), (false, 0)] {
            let mut sim = Sim::new(TimerConfig::default(), 10);
            sim.t.on_session_derived(Duration::ZERO, initiator);
            sim.run_until(s(119.9));
            sim.t.on_data_sent(sim.now);
            sim.t.on_authenticated_packet_received(sim.now);
            sim.run_until(s(119.99));
            assert!(sim.log.is_empty());
            sim.run_until(s(120.0));
            sim.t.on_data_sent(sim.now);
            sim.t.on_authenticated_packet_received(sim.now);
            sim.run_until(s(120.01));
            assert_eq!(sim.times(|a| a.send_initiation).len(), want);
            if want == 1 {
                assert_eq!(sim.times(|a| a.send_initiation), vec![s(120.01)]);
            }
        }
    }

    #[test]
    fn last_minute_rekey_on_receive_once_per_session() {
        let fresh = |a: &Actions| a.send_initiation && !a.initiation_is_retry;
        let mut sim = Sim::new(TimerConfig::default(), 11);
        sim.t.on_session_derived(Duration::ZERO, true);
        sim.run_until(s(164.9));
        sim.t.on_data_received(sim.now);
        sim.t.on_authenticated_packet_sent(sim.now);
        sim.run_until(s(164.99));
        assert!(sim.times(fresh).is_empty());
        sim.run_until(s(165.0));
        sim.t.on_data_received(sim.now);
        sim.run_until(s(165.05));
        assert_eq!(sim.times(fresh), vec![s(165.01)]);
        // More data on the same, still old session: no second request.
        sim.run_until(s(171.0));
        sim.t.on_data_received(sim.now);
        sim.run_until(s(172.0));
        assert_eq!(sim.times(fresh).len(), 1);
        // The handshake completes with a new session: young again, no request.
        sim.t.on_handshake_complete(sim.now);
        sim.t.on_session_derived(sim.now, true);
        sim.run_until(s(178.0));
        sim.t.on_data_received(sim.now);
        sim.run_until(s(180.0));
        assert_eq!(sim.times(fresh).len(), 1);
        // A responder never does this.
        let mut sim = Sim::new(TimerConfig::default(), 11);
        sim.t.on_session_derived(Duration::ZERO, false);
        sim.run_until(s(170.0));
        sim.t.on_data_received(sim.now);
        sim.run_until(s(171.0));
        assert!(sim.times(fresh).is_empty());
    }

    #[test]
    fn fresh_initiations_are_rate_limited() {
        let mut sim = Sim::new(TimerConfig::default(), 12);
        sim.t.request_handshake(Duration::ZERO);
        sim.run_until(s(1.0));
        sim.t.on_handshake_complete(sim.now);
        sim.t.request_handshake(sim.now);
        sim.run_until(s(2.0));
        assert_eq!(
            sim.times(|a| a.send_initiation),
            vec![STEP],
            "dropped: < 5 s"
        );
        sim.run_until(s(4.99));
        sim.t.request_handshake(sim.now);
        sim.run_until(s(5.0)); // ticked 4.99 s after the first: dropped
        assert_eq!(sim.times(|a| a.send_initiation).len(), 1);
        sim.t.request_handshake(sim.now);
        sim.run_until(s(5.01)); // ticked 5.0 s after the first: sent
        assert_eq!(sim.times(|a| a.send_initiation), vec![STEP, s(5.01)]);
    }

    #[test]
    fn next_deadline_tracks_timers() {
        let mut t = Timers::new(TimerConfig::default());
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        t.on_data_received(s(1.0));
        assert_eq!(t.next_deadline(), Some(s(11.0)));
        t.on_session_derived(s(2.0), true);
        assert_eq!(t.next_deadline(), Some(s(11.0)));
        assert!(t.tick(s(10.9), &mut rng).is_empty());
        assert!(t.tick(s(11.0), &mut rng).send_keepalive);
        assert_eq!(t.next_deadline(), Some(s(542.0)));
        t.request_handshake(s(12.0));
        assert_eq!(t.next_deadline(), Some(Duration::ZERO));
    }

    #[test]
    fn compressed_config_scales() {
        let config = TimerConfig {
            rekey_timeout: 50 * MS,
            rekey_attempt_time: 900 * MS,
            rekey_timeout_jitter_max: Duration::ZERO,
            ..TimerConfig::default()
        };
        let mut sim = Sim::new(config, 14);
        sim.t.request_handshake(Duration::ZERO);
        sim.run_until(s(5.0));
        let inits = sim.times(|a| a.send_initiation);
        assert_eq!(inits.len(), 20);
        assert_eq!(inits[1] - inits[0], 50 * MS);
        assert_eq!(
            sim.times(|a| a.handshake_gave_up),
            vec![STEP + 20 * 50 * MS]
        );
    }
}
