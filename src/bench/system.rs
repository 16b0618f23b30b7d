//! What `lethe bench` reads of the machine: how fast the disk makes writes durable (the flush probe)
//! and processor time from `/proc`.

use super::*;

/// How fast the disk under the data directory makes writes durable, measured the way PostgreSQL's
/// `pg_test_fsync` does: the median time of `fdatasync` after writing one page, [`FLUSH_PAGES`]
/// adjacent pages, and as many pages scattered over a file written out beforehand. A durable redb
/// commit flushes the B-tree pages its group dirtied, and reveals of secrets made at different times
/// dirty pages far apart, so where a disk charges for each separate write, the scattered figure is
/// what bounds a commit of reveals.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Flush {
    pub pages: usize,
    pub one_page_ms: f64,
    pub adjacent_ms: f64,
    pub scattered_ms: f64,
}

/// Pages written before each flush of the adjacent and scattered probes: a full group of reveals
/// dirties about that many.
pub const FLUSH_PAGES: usize = 64;
pub(super) const FLUSH_PAGE_BYTES: u64 = 4096;
/// Written out in full, not just sized: in a sparse file every flush would also pay for allocating
/// blocks, which a database file that has settled does not.
pub(super) const FLUSH_FILE_BYTES: u64 = 32 << 20;
pub(super) const FLUSH_ROUNDS: usize = 15;

/// Measures [`Flush`] with a scratch file in `dir`, removed afterwards. Blocking: it writes 32 MiB and
/// flushes 45 times.
pub(super) fn probe_flush(dir: &Path) -> std::io::Result<Flush> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("flush-probe");
    let result = (|| {
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let chunk = vec![0x5a_u8; 1 << 20];
        for at in (0..FLUSH_FILE_BYTES).step_by(chunk.len()) {
            file.write_all_at(&chunk, at)?;
        }
        file.sync_data()?;
        let pages = FLUSH_FILE_BYTES / FLUSH_PAGE_BYTES;
        // xorshift64: any spread of offsets will do, and the same one every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random_page = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % pages
        };
        let page = [0xa5_u8; FLUSH_PAGE_BYTES as usize];
        let median_flush = |offsets: &mut dyn FnMut() -> Vec<u64>| -> std::io::Result<f64> {
            let mut times = Vec::with_capacity(FLUSH_ROUNDS);
            for _ in 0..FLUSH_ROUNDS {
                for page_no in offsets() {
                    file.write_all_at(&page, page_no * FLUSH_PAGE_BYTES)?;
                }
                let started = Instant::now();
                file.sync_data()?;
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            Ok(times[times.len() / 2])
        };
        let n = FLUSH_PAGES as u64;
        let one_page_ms = median_flush(&mut || vec![random_page()])?;
        let adjacent_ms = median_flush(&mut || {
            let first = random_page() % (pages - n);
            (first..first + n).collect()
        })?;
        let scattered_ms = median_flush(&mut || (0..n).map(|_| random_page()).collect())?;
        Ok(Flush { pages: FLUSH_PAGES, one_page_ms, adjacent_ms, scattered_ms })
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Processor time used so far by this process, and by the store's writer thread if this process runs
/// one, read from `/proc` (Linux); `None` where there is no `/proc`.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuTimes {
    pub(super) process: Duration,
    pub(super) writer: Option<Duration>,
}

/// CPU busy during a phase, in cores (1.0 = one core for the whole phase).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    /// This process: the load generator, and the server when it runs in-process.
    pub cores: f64,
    /// The in-process redb store's writer thread (its commits, including the kernel's share).
    pub writer_cores: Option<f64>,
}

impl CpuTimes {
    pub(super) fn now() -> Option<CpuTimes> {
        let process = stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let writer = std::fs::read_dir("/proc/self/task").ok()?.flatten().find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            // The kernel keeps 15 bytes of a thread's name.
            if comm.trim_end() != &store::WRITER_THREAD[..store::WRITER_THREAD.len().min(15)] {
                return None;
            }
            stat_cpu(&std::fs::read_to_string(task.path().join("stat")).ok()?)
        });
        Some(CpuTimes { process, writer })
    }

    pub(super) fn since(&self, earlier: &CpuTimes, wall: Duration) -> CpuUse {
        let wall = wall.as_secs_f64().max(1e-9);
        let cores = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() / wall;
        CpuUse {
            cores: cores(self.process, earlier.process),
            writer_cores: self.writer.zip(earlier.writer).map(|(now, then)| cores(now, then)),
        }
    }
}

/// User plus system time from a `/proc/.../stat` line. The fields after the command name (which is in
/// parentheses and may hold spaces) start with the state; `utime` and `stime` are the 12th and 13th of
/// them, in clock ticks of `USER_HZ`, which Linux fixes at 100 for user space on every architecture it
/// ships for.
pub(super) fn stat_cpu(stat: &str) -> Option<Duration> {
    const USER_HZ: u64 = 100;
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime).saturating_mul(1000 / USER_HZ)))
}
