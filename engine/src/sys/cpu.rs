//! CPU lists, affinity, NUMA node CPUs and per-thread CPU time.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Largest CPU number a `cpu_set_t` can hold, plus one (glibc's `CPU_SETSIZE`).
pub const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;

/// Errors of the CPU helpers.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// A CPU list string such as `0-3,8` could not be parsed.
    #[error("invalid CPU list {input:?}: {reason}")]
    Parse {
        /// The whole input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CPU number is too large for `cpu_set_t`.
    #[error("CPU {0} is out of range (the maximum is {max})", max = MAX_CPUS - 1)]
    OutOfRange(usize),
    /// The NUMA node does not exist or its CPU list cannot be read.
    #[error("cannot read the CPUs of NUMA node {node} ({path}): {source}")]
    NumaNode {
        /// The node asked for.
        node: u32,
        /// The sysfs file read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `sched_setaffinity`/`sched_getaffinity`/`getrusage` failed.
    #[error("{call} failed: {source}")]
    Syscall {
        /// The call that failed.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// A sorted, duplicate-free set of CPU numbers, parsed from and printed as the kernel's list
/// format (`0-3,8`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuList {
    cpus: Vec<usize>,
}

impl CpuList {
    /// Parses a list such as `0-3,8` (whitespace around items and a trailing newline are
    /// accepted; an empty or all-blank string is the empty list, as sysfs prints it for a node
    /// without CPUs).
    pub fn parse(input: &str) -> Result<Self, CpuError> {
        let err = |reason: String| CpuError::Parse {
            input: input.to_owned(),
            reason,
        };
        let trimmed = input.trim();
        let mut cpus = Vec::new();
        if trimmed.is_empty() {
            return Ok(Self { cpus });
        }
        for item in trimmed.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(err("empty item (stray comma?)".to_owned()));
            }
            let num = |s: &str| -> Result<usize, CpuError> {
                let s = s.trim();
                let n: usize = s
                    .parse()
                    .map_err(|_| err(format!("{s:?} is not a CPU number")))?;
                if n >= MAX_CPUS {
                    return Err(CpuError::OutOfRange(n));
                }
                Ok(n)
            };
            match item.split_once('-') {
                None => cpus.push(num(item)?),
                Some((lo, hi)) => {
                    let (lo, hi) = (num(lo)?, num(hi)?);
                    if lo > hi {
                        return Err(err(format!("range {item:?} runs backwards")));
                    }
                    cpus.extend(lo..=hi);
                }
            }
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(Self { cpus })
    }

    /// A list of the given CPUs (sorted and deduplicated).
    pub fn from_cpus(cpus: impl IntoIterator<Item = usize>) -> Result<Self, CpuError> {
        let mut cpus: Vec<usize> = cpus.into_iter().collect();
        if let Some(&bad) = cpus.iter().find(|&&c| c >= MAX_CPUS) {
            return Err(CpuError::OutOfRange(bad));
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(Self { cpus })
    }

    /// The CPUs in ascending order.
    pub fn as_slice(&self) -> &[usize] {
        &self.cpus
    }

    /// Number of CPUs in the list.
    pub fn len(&self) -> usize {
        self.cpus.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.cpus.is_empty()
    }

    /// Whether `cpu` is in the list.
    pub fn contains(&self, cpu: usize) -> bool {
        self.cpus.binary_search(&cpu).is_ok()
    }

    /// The CPUs present in both lists.
    pub fn intersection(&self, other: &CpuList) -> CpuList {
        CpuList {
            cpus: self
                .cpus
                .iter()
                .copied()
                .filter(|&c| other.contains(c))
                .collect(),
        }
    }
}

impl FromStr for CpuList {
    type Err = CpuError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.cpus.len() {
            let start = self.cpus[i];
            let mut end = start;
            while i + 1 < self.cpus.len() && self.cpus[i + 1] == end + 1 {
                i += 1;
                end += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

/// Pins the calling thread to `cpu` (`sched_setaffinity` on thread id 0 = the caller).
pub fn pin_to_cpu(cpu: usize) -> Result<(), CpuError> {
    if cpu >= MAX_CPUS {
        return Err(CpuError::OutOfRange(cpu));
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE`, checked above, so CPU_SET stays inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t and the size passed is its size.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(CpuError::Syscall {
            call: "sched_setaffinity",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The CPUs the calling thread may run on (`sched_getaffinity`).
pub fn allowed_cpus() -> Result<CpuList, CpuError> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t and the size passed is its size.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(CpuError::Syscall {
            call: "sched_getaffinity",
            source: io::Error::last_os_error(),
        });
    }
    let mut cpus = Vec::new();
    for c in 0..MAX_CPUS {
        // SAFETY: `c < CPU_SETSIZE`, so the bit lies inside `set`.
        if unsafe { libc::CPU_ISSET(c, &set) } {
            cpus.push(c);
        }
    }
    CpuList::from_cpus(cpus)
}

/// The CPUs of NUMA node `node`, from `/sys/devices/system/node/node<N>/cpulist`.
pub fn cpus_of_numa_node(node: u32) -> Result<CpuList, CpuError> {
    cpus_of_numa_node_in(std::path::Path::new("/sys/devices/system/node"), node)
}

/// [`cpus_of_numa_node`] below another sysfs root (for tests).
pub(crate) fn cpus_of_numa_node_in(root: &std::path::Path, node: u32) -> Result<CpuList, CpuError> {
    let path = root.join(format!("node{node}")).join("cpulist");
    let text = std::fs::read_to_string(&path).map_err(|source| CpuError::NumaNode {
        node,
        path: path.clone(),
        source,
    })?;
    CpuList::parse(&text)
}

/// CPU time consumed by one thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on behalf of the thread.
    pub system: Duration,
}

impl CpuTime {
    /// User plus system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

fn timeval_to_duration(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

/// CPU time of the calling thread (`getrusage(RUSAGE_THREAD)`).
pub fn thread_cpu_time() -> Result<CpuTime, CpuError> {
    // SAFETY: rusage is plain old data; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return Err(CpuError::Syscall {
            call: "getrusage",
            source: io::Error::last_os_error(),
        });
    }
    Ok(CpuTime {
        user: timeval_to_duration(ru.ru_utime),
        system: timeval_to_duration(ru.ru_stime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        let l = CpuList::parse("0-3,8").unwrap();
        assert_eq!(l.as_slice(), &[0, 1, 2, 3, 8]);
        assert_eq!(l.to_string(), "0-3,8");
        let l: CpuList = " 8, 2-3 ,2,0\n".parse().unwrap();
        assert_eq!(l.as_slice(), &[0, 2, 3, 8]);
        assert_eq!(l.to_string(), "0,2-3,8");
        assert!(CpuList::parse("\n").unwrap().is_empty());
        assert_eq!(CpuList::parse("5-5").unwrap().as_slice(), &[5]);
    }

    #[test]
    fn rejects_bad_lists_with_reasons() {
        for (bad, needle) in [
            ("1,,2", "empty item"),
            ("a", "not a CPU number"),
            ("3-1", "backwards"),
            ("1-", "not a CPU number"),
            ("-1", "not a CPU number"),
            ("0-3,", "empty item"),
            ("1 2", "not a CPU number"),
        ] {
            let e = CpuList::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
        assert!(matches!(
            CpuList::parse("0-5000"),
            Err(CpuError::OutOfRange(5000))
        ));
    }

    #[test]
    fn affinity_round_trip_on_a_thread() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let target = *allowed.as_slice().last().unwrap();
        std::thread::spawn(move || {
            pin_to_cpu(target).unwrap();
            assert_eq!(allowed_cpus().unwrap().as_slice(), &[target]);
        })
        .join()
        .unwrap();
        // The pin applied to the spawned thread only.
        assert_eq!(allowed_cpus().unwrap(), allowed);
        assert!(matches!(pin_to_cpu(MAX_CPUS), Err(CpuError::OutOfRange(_))));
    }

    #[test]
    fn numa_node_from_sysfs_layout() {
        let dir = std::env::temp_dir().join(format!("ut-numa-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("node1")).unwrap();
        std::fs::write(dir.join("node1/cpulist"), "2-3,6\n").unwrap();
        assert_eq!(
            cpus_of_numa_node_in(&dir, 1).unwrap().as_slice(),
            &[2, 3, 6]
        );
        let e = cpus_of_numa_node_in(&dir, 7).unwrap_err().to_string();
        assert!(e.contains("NUMA node 7"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        // The real node 0 exists on every Linux machine with sysfs NUMA info.
        if std::path::Path::new("/sys/devices/system/node/node0").exists() {
            assert!(!cpus_of_numa_node(0).unwrap().is_empty());
        }
    }

    #[test]
    fn thread_cpu_time_grows_with_work() {
        let before = thread_cpu_time().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = thread_cpu_time().unwrap();
        assert!(after.total() > before.total(), "{before:?} -> {after:?}");
    }
}
