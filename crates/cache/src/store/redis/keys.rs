//! Where things live in Redis, all under the configured prefix:
//!
//! | key | holds |
//! | --- | --- |
//! | `<prefix><key>` | an entry (envelope, see `codec.rs`), with its TTL |
//! | `<prefix>~t:{<tag>}` | the tag's current version (random) |
//! | `<prefix>~m:{<tag>}` | the entries written under the tag (for reclaiming memory only) |
//! | `<prefix>~g:{<tag>}:<random>` | a member set handed to the sweeper by an invalidation |
//! | `<prefix>~sweep` | the list of member sets still to sweep |
//! | `<prefix>~lock:<key>#<versions>` | the loading lease of an entry for its tags' current versions (a random token) |
//!
//! Entry keys keep the caller's key as-is after the prefix, as the reference
//! design did, so `clear_pattern("analytics:*")` and operators' `SCAN`s read
//! naturally. Caller keys may therefore not begin with `~`.

pub(crate) struct KeyLayout {
    pub prefix: String,
    pub marker_prefix: String,
    pub members_prefix: String,
    pub sweep_list: String,
}

impl KeyLayout {
    pub fn new(prefix: &str) -> Self {
        KeyLayout {
            prefix: prefix.to_string(),
            marker_prefix: format!("{prefix}~t:{{"),
            members_prefix: format!("{prefix}~m:{{"),
            sweep_list: format!("{prefix}~sweep"),
        }
    }

    pub fn entry(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }

    pub fn marker(&self, tag: &str) -> String {
        format!("{}{tag}}}", self.marker_prefix)
    }

    pub fn members(&self, tag: &str) -> String {
        format!("{}{tag}}}", self.members_prefix)
    }

    /// The loading lease of an entry (stampede protection across
    /// processes), for one generation of its tags' versions: a load that
    /// began before an invalidation does not hold up the loads after it.
    pub fn lock(&self, key: &str, generation: u64) -> String {
        format!("{}~lock:{key}#{generation:016x}", self.prefix)
    }

    pub fn grave(&self, tag: &str) -> String {
        format!("{}~g:{{{tag}}}:{:016x}", self.prefix, rand::random::<u64>())
    }

    /// Is this Redis key one of the cache's own bookkeeping keys?
    pub fn is_bookkeeping(&self, redis_key: &[u8]) -> bool {
        redis_key.get(self.prefix.len()) == Some(&b'~')
    }
}
