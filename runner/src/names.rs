//! Container names and IDs, as Docker makes and checks them.
//!
//! Owns: the name pattern (`validate_name`), the `adjective_surname` generator with Docker's retry
//! scheme (`generate_name`), and 64-hex-digit random IDs (`new_id`). Randomness comes from the OS
//! (`/dev/urandom`); nothing here needs a seedable RNG.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

/// The character classes Docker prints in its error message (`validContainerNameChars`).
const VALID_NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

/// Checks a container name against Docker's `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`.
///
/// The optional leading `/` is accepted because Docker stores names with it and accepts it back;
/// callers that store names should strip it. Note the `+`: a name needs at least two characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    let body = name.strip_prefix('/').unwrap_or(name);
    let bytes = body.as_bytes();
    let valid = bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "Invalid container name ({name}), only {VALID_NAME_CHARS} are allowed"
        ))
    }
}

/// A random `adjective_surname` name that `taken` says is free.
///
/// Docker's scheme: the first try is a bare pair, each retry appends one random digit (0–9), and
/// the daemon gives up after 6 tries. Docker then falls back to the short container ID, which this
/// function does not know, so instead it keeps trying with longer numeric suffixes and finally a
/// 12-hex-digit suffix, which is free unless `taken` answers true for everything.
pub fn generate_name(taken: &dyn Fn(&str) -> bool) -> String {
    let mut rng = Rng::new();
    for attempt in 0..64u32 {
        let mut name = random_pair(&mut rng);
        // 1–5: one digit as Docker; later tries widen the suffix so a crowded host still finds one.
        let digits = match attempt {
            0 => 0,
            1..=5 => 1,
            6..=31 => 2,
            _ => 4,
        };
        for _ in 0..digits {
            name.push(char::from(b'0' + (rng.below(10) as u8)));
        }
        if !taken(&name) {
            return name;
        }
    }
    let mut name = random_pair(&mut rng);
    name.push('_');
    name.push_str(&new_id()[..12]);
    name
}

/// A new container or exec ID: 32 random bytes as 64 lowercase hex digits.
///
/// Like Docker's `stringid.GenerateRandomID`, an ID whose 12-character short form is all digits is
/// regenerated: the short ID becomes the hostname, and an all-numeric hostname is ambiguous with an
/// IP address or number in several tools.
pub fn new_id() -> String {
    loop {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes);
        let id = hex::encode(bytes);
        if !id.as_bytes()[..12].iter().all(u8::is_ascii_digit) {
            return id;
        }
    }
}

fn random_pair(rng: &mut Rng) -> String {
    loop {
        let left = ADJECTIVES[rng.below(ADJECTIVES.len() as u64) as usize];
        let right = SURNAMES[rng.below(SURNAMES.len() as u64) as usize];
        // Docker's one exception, kept for the joke: Steve Wozniak is not boring.
        if left == "boring" && right == "wozniak" {
            continue;
        }
        return format!("{left}_{right}");
    }
}

/// Fills `buf` from `/dev/urandom`. If that cannot be read (a broken chroot, fd exhaustion), falls
/// back to SipHash keyed by std's per-process OS-seeded keys mixed with time and a counter: IDs
/// only need to be unique, not secret, and failing `berth run` over it would help nobody.
fn fill_random(buf: &mut [u8]) {
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf)) {
        Ok(()) => {}
        Err(err) => {
            tracing::warn!(%err, "cannot read /dev/urandom; using a weaker fallback for randomness");
            fallback_random(buf);
        }
    }
}

fn fallback_random(buf: &mut [u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for chunk in buf.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// A small pool of OS randomness, so one name costs one read of `/dev/urandom`.
struct Rng {
    pool: [u8; 64],
    pos: usize,
}

impl Rng {
    fn new() -> Self {
        let mut pool = [0u8; 64];
        fill_random(&mut pool);
        Rng { pool, pos: 0 }
    }

    fn next_u64(&mut self) -> u64 {
        if self.pos + 8 > self.pool.len() {
            fill_random(&mut self.pool);
            self.pos = 0;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.pool[self.pos..self.pos + 8]);
        self.pos += 8;
        u64::from_le_bytes(b)
    }

    /// Uniform in `0..n` (rejection sampling: no modulo bias, which matters for nothing here
    /// but costs nothing either).
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "adoring",
    "affectionate",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "beautiful",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "calm",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "diligent",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "nifty",
    "nostalgic",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "wizardly",
    "wonderful",
    "youthful",
    "zealous",
    "zen",
];

const SURNAMES: &[&str] = &[
    "agnesi",
    "allen",
    "archimedes",
    "babbage",
    "backus",
    "bardeen",
    "bartik",
    "bell",
    "berners",
    "bhabha",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brattain",
    "carson",
    "cerf",
    "chandrasekhar",
    "clarke",
    "cohen",
    "conway",
    "cori",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "dirac",
    "easley",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "germain",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hertz",
    "hodgkin",
    "hofstadter",
    "hopper",
    "hypatia",
    "jackson",
    "johnson",
    "kalam",
    "kare",
    "keller",
    "kepler",
    "khorana",
    "kilby",
    "knuth",
    "kowalevski",
    "lamarr",
    "lamport",
    "leakey",
    "leavitt",
    "lovelace",
    "lumiere",
    "margulis",
    "maxwell",
    "mccarthy",
    "mcclintock",
    "meitner",
    "mendel",
    "mirzakhani",
    "montalcini",
    "moore",
    "morse",
    "napier",
    "newton",
    "nobel",
    "noether",
    "noyce",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "ramanujan",
    "raman",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "shockley",
    "sinoussi",
    "stallman",
    "swartz",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "volta",
    "wescoff",
    "wiles",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "wu",
    "yalow",
    "yonath",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;

    #[test]
    fn valid_names_pass() {
        for name in ["ab", "web", "/web", "my-app_1.0", "A9", "0x"] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invalid_names_get_dockers_message() {
        for name in [
            "", "a", "/a", "-web", "_web", ".web", "we b", "web/1", "wéb", "//web", "web:1",
        ] {
            let err = validate_name(name).expect_err(name);
            assert_eq!(
                err,
                format!(
                    "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )
            );
        }
    }

    #[test]
    fn generated_names_are_valid_pairs_from_the_lists() {
        for _ in 0..200 {
            let name = generate_name(&|_| false);
            validate_name(&name).expect("generated name is valid");
            let (left, right) = name.split_once('_').expect("adjective_surname");
            assert!(ADJECTIVES.contains(&left), "{name}");
            assert!(SURNAMES.contains(&right), "{name}");
            assert_ne!(name, "boring_wozniak");
        }
    }

    #[test]
    fn word_lists_are_sized_and_clean() {
        assert!(ADJECTIVES.len() >= 60 && SURNAMES.len() >= 100);
        for w in ADJECTIVES.iter().chain(SURNAMES) {
            assert!(w.bytes().all(|b| b.is_ascii_lowercase()), "{w}");
        }
        let unique: HashSet<_> = SURNAMES.iter().collect();
        assert_eq!(unique.len(), SURNAMES.len(), "duplicate surname");
        let unique: HashSet<_> = ADJECTIVES.iter().collect();
        assert_eq!(unique.len(), ADJECTIVES.len(), "duplicate adjective");
    }

    #[test]
    fn taken_names_are_retried_then_get_a_digit() {
        let seen = RefCell::new(Vec::new());
        // Every bare pair is taken: the result must carry a one-digit suffix, as Docker's retries.
        let name = generate_name(&|n: &str| {
            seen.borrow_mut().push(n.to_string());
            !n.ends_with(|c: char| c.is_ascii_digit())
        });
        let last = name.chars().last().expect("non-empty");
        assert!(last.is_ascii_digit(), "{name}");
        assert!(
            !name[..name.len() - 1].ends_with(|c: char| c.is_ascii_digit()),
            "{name}"
        );
        assert_eq!(seen.borrow().len(), 2);
        validate_name(&name).expect("valid");
    }

    #[test]
    fn everything_taken_still_terminates_with_a_long_suffix() {
        let name = generate_name(&|_| true);
        let suffix = name.rsplit('_').next().expect("suffix");
        assert_eq!(suffix.len(), 12, "{name}");
        validate_name(&name).expect("valid");
    }

    #[test]
    fn ids_are_64_lowercase_hex_and_unique() {
        let mut ids = HashSet::new();
        for _ in 0..500 {
            let id = new_id();
            assert_eq!(id.len(), 64);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert!(!id[..12].bytes().all(|b| b.is_ascii_digit()), "{id}");
            assert!(ids.insert(id));
        }
    }

    #[test]
    fn fallback_randomness_differs_between_calls() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        fallback_random(&mut a);
        fallback_random(&mut b);
        assert_ne!(a, b);
    }
}
