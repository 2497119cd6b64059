//! Workloads shared by the criterion benches: the committed example plans, generated
//! large plans, and event streams that hit them.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use tollgate_tariffs::source::PlanSource;
use tollgate_tariffs::{compile_file, CompiledPlan};

/// Path of a committed example plan.
pub fn example_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples").join(name)
}

/// Compiles a committed example plan.
pub fn example(name: &str) -> CompiledPlan {
    compile_file(&example_path(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// Every inline destination prefix of a committed example plan.
pub fn example_prefixes(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(example_path(name)).expect("example plan");
    let source: PlanSource = toml::from_str(&text).expect("example plan parses");
    source.destinations.iter().flat_map(|d| d.get_ref().prefixes.iter().map(|p| p.get_ref().clone())).collect()
}

/// A small deterministic generator (xorshift64*), so workloads are the same on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// Called numbers: a random known prefix followed by random digits up to 12 digits.
pub fn numbers(prefixes: &[String], count: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let mut number = prefixes[rng.below(prefixes.len() as u64) as usize].clone();
            while number.len() < 12 {
                number.push(char::from(b'0' + rng.below(10) as u8));
            }
            number
        })
        .collect()
}

/// Writes a wholesale plan with `prefixes` destination prefixes over `destinations`
/// groups into `dir` (the prefixes in a `prefix,destination` CSV), and returns the plan
/// path, the plan as one inline TOML text, and the prefixes.
pub fn write_generated_plan(dir: &Path, prefixes: usize, destinations: usize) -> (PathBuf, String, Vec<String>) {
    let mut rng = Rng::new(20_261_123);
    let mut seen = std::collections::HashSet::with_capacity(prefixes);
    let mut table: Vec<(String, usize)> = Vec::with_capacity(prefixes);
    while table.len() < prefixes {
        let len = 4 + rng.below(6) as usize;
        let prefix: String = (0..len).map(|i| char::from(b'0' + (rng.below(9) as u8 + u8::from(i == 0)))).collect();
        if seen.insert(prefix.clone()) {
            table.push((prefix, rng.below(destinations as u64) as usize));
        }
    }
    let mut header = String::from(
        "[plan]\nid = \"generated\"\nversion = 1\ncurrency = \"USD\"\ntime_zone = \"UTC\"\n\
         effective_from = \"2026-01-01T00:00:00Z\"\n[[services]]\nname = \"voice\"\nunit = \"seconds\"\n",
    );
    for destination in 0..destinations {
        header.push_str(&format!(
            "[[rates]]\nservice = \"voice\"\ndestination = \"d{destination}\"\nprice = \"0.0{}\"\nper = 60\n",
            destination % 90 + 10
        ));
    }
    let mut csv = String::with_capacity(prefixes * 16);
    for (prefix, destination) in &table {
        csv.push_str(&format!("{prefix},d{destination}\n"));
    }
    let mut inline = header.clone();
    let mut by_destination = vec![Vec::new(); destinations];
    for (prefix, destination) in &table {
        by_destination[*destination].push(prefix.as_str());
    }
    for (destination, prefixes) in by_destination.iter().enumerate() {
        inline.push_str(&format!(
            "[[destinations]]\nname = \"d{destination}\"\nprefixes = [\"{}\"]\n",
            prefixes.join("\", \"")
        ));
    }
    std::fs::create_dir_all(dir).expect("bench dir");
    std::fs::write(dir.join("prefixes.csv"), csv).expect("write prefixes");
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, format!("prefix_files = [\"prefixes.csv\"]\n{header}")).expect("write plan");
    (plan, inline, table.into_iter().map(|(prefix, _)| prefix).collect())
}
