//! What each request asks for: a guild by a Zipf law over the guilds'
//! size ranks (the analytics and `since` are uniform picks of an index);
//! an event's kind by the weights of real traffic.

use rand::Rng;
use rand::distr::Distribution;
use rand_distr::Zipf;
use spywatcher_analytics::EventKind;

/// Guild ranks (0 = the largest guild) drawn by a Zipf law.
#[derive(Debug, Clone)]
pub struct GuildPicker {
    zipf: Zipf<f64>,
    guilds: usize,
}

impl GuildPicker {
    /// `guilds` ranks, exponent `skew` (0 = uniform). `guilds` ≥ 1 and a
    /// finite `skew` ≥ 0 are checked by the command line.
    pub fn new(guilds: usize, skew: f64) -> anyhow::Result<Self> {
        anyhow::ensure!(guilds >= 1, "no guilds to pick from");
        let zipf = Zipf::new(guilds as f64, skew)
            .map_err(|e| anyhow::anyhow!("Zipf law over {guilds} guilds, exponent {skew}: {e}"))?;
        Ok(GuildPicker { zipf, guilds })
    }

    /// A rank in `0..guilds`.
    pub fn pick(&self, rng: &mut impl Rng) -> usize {
        // The law draws 1..=n as a float; the clamp keeps a rounding at the
        // edge inside the slice.
        (self.zipf.sample(rng) as usize)
            .saturating_sub(1)
            .min(self.guilds - 1)
    }
}

/// Relative weights of the event kinds posted, as the generator's regular
/// members act: messages and typing most, presence often, role changes and
/// joins now and then.
pub const EVENT_WEIGHTS: [(EventKind, u32); 5] = [
    (EventKind::Message, 40),
    (EventKind::Typing, 35),
    (EventKind::Presence, 22),
    (EventKind::RoleChange, 2),
    (EventKind::MemberJoin, 1),
];

/// An event kind by [`EVENT_WEIGHTS`].
pub fn event_kind(rng: &mut impl Rng) -> EventKind {
    let total: u32 = EVENT_WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (kind, weight) in EVENT_WEIGHTS {
        if x < weight {
            return kind;
        }
        x -= weight;
    }
    EventKind::Message
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use spywatcher_analytics::EventKind;

    use super::{GuildPicker, event_kind};

    #[test]
    fn picks_stay_in_range_and_favour_the_largest_guilds() {
        let mut rng = StdRng::seed_from_u64(1);
        for guilds in [1, 2, 50] {
            let picker = GuildPicker::new(guilds, 1.0).unwrap();
            let mut counts = vec![0u32; guilds];
            for _ in 0..20_000 {
                counts[picker.pick(&mut rng)] += 1;
            }
            assert!(counts[0] >= *counts.iter().max().unwrap() / 2, "{counts:?}");
            if guilds == 50 {
                // Zipf(1) over 50: rank 0 has 1/H(50) = 22 % of the picks,
                // rank 49 about 0.45 %.
                assert!((3_600..5_400).contains(&counts[0]), "{counts:?}");
                assert!(counts[49] < 300, "{counts:?}");
                assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
            }
        }
    }

    #[test]
    fn zero_skew_is_uniform() {
        let mut rng = StdRng::seed_from_u64(2);
        let picker = GuildPicker::new(4, 0.0).unwrap();
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[picker.pick(&mut rng)] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn event_kinds_follow_their_weights() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut messages = 0;
        let mut joins = 0;
        for _ in 0..10_000 {
            match event_kind(&mut rng) {
                EventKind::Message => messages += 1,
                EventKind::MemberJoin => joins += 1,
                _ => {}
            }
        }
        assert!((3_600..4_400).contains(&messages), "{messages}");
        assert!(joins < 250, "{joins}");
    }
}
