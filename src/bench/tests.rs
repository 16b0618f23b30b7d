use super::local::TempDir;
use super::*;

fn args(mix: Mix) -> BenchArgs {
    BenchArgs {
        url: Vec::new(),
        mix,
        concurrency: 4,
        duration: Some(60.0),
        requests: Some(40),
        storage: None,
        redis_url: None,
        bcrypt_cost: None,
        live_secrets: 1000,
        json: false,
    }
}

fn sane(op: &OpReport) {
    assert!(op.ok > 0, "{op:?}");
    assert_eq!(op.errors, 0, "{op:?}");
    let (p50, p99, max) = (op.p50_ms.unwrap(), op.p99_ms.unwrap(), op.max_ms.unwrap());
    assert!(p50 <= op.p90_ms.unwrap() && op.p90_ms.unwrap() <= p99 && p99 <= max, "{op:?}");
    assert!(op.per_second > 0.0, "{op:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_v1_run_on_redb_reports_sane_numbers() {
    let plan = args(Mix::V1).plan().expect("plan");
    let report = run(&plan).await.expect("run");
    assert_eq!(report.operations.iter().map(|o| o.name).collect::<Vec<_>>(), ["health", "share", "reveal"]);
    for op in &report.operations {
        sane(op);
    }
    // Every share was revealed: the caps give reads as many slots as creates.
    assert_eq!(report.operations[1].ok, report.operations[2].ok);
    assert_eq!(report.disk.secrets_created, report.operations[1].ok);
    // Each share stores a sealed value, its metadata and two index rows: hundreds of bytes.
    let per_secret = report.disk.bytes_per_secret.expect("bytes per secret");
    assert!((100.0..20_000.0).contains(&per_secret), "{:?}", report.disk);
    // Linux has /proc: every phase says how busy the cores were, and the redb phases the writer.
    assert!(report.operations.iter().all(|op| op.cpu.is_some_and(|c| c.cores >= 0.0)), "{report:?}");
    assert!(report.operations[1].cpu.and_then(|c| c.writer_cores).is_some(), "{report:?}");
    // Processor time per request is the cores over the rate.
    let share = &report.operations[1];
    let expected = share.cpu.map(|c| c.cores / share.per_second * 1e6);
    assert_eq!(share.cpu_us_per_request, expected);
    let writer = report.writer.as_ref().expect("redb writer stats");
    assert!(writer.commits > 0 && writer.batches >= writer.commits);
    assert!(report.capacity.creates_per_second > 0.0 && report.capacity.disk_bytes.is_some());
    // The flush probe ran, in the data directory of the server it started.
    let flush = report.flush.expect("flush probe");
    assert_eq!(flush.pages, FLUSH_PAGES);
    assert!(
        [flush.one_page_ms, flush.adjacent_ms, flush.scattered_ms]
            .iter()
            .all(|ms| ms.is_finite() && *ms >= 0.0)
    );
    assert_eq!(report.flush_error, None);
    let text = report.render();
    assert!(text.contains("bcrypt cost 4") && text.contains("capacity"), "{text}");
    assert!(text.contains("64 scattered pages") && text.contains("µs per request"), "{text}");
    assert!(!text.contains("failed"), "{text}");
    // Refusals are not capacity: a run with errors says its rates count successes only.
    let mut refused = report.clone();
    refused.operations[1].errors = 3;
    refused.operations[2].errors = 2;
    assert!(refused.render().contains("5 creates and reads failed"), "{}", refused.render());
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["mix"], "v1");
    assert_eq!(json["operations"][2]["name"], "reveal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_run_on_the_memory_store_reports_disk_as_not_applicable() {
    let mut a = args(Mix::V1Passphrase);
    a.storage = Some("memory".into());
    a.requests = Some(20);
    let report = run(&a.plan().expect("plan")).await.expect("run");
    for op in &report.operations {
        sane(op);
    }
    assert!(report.disk.bytes_per_secret.is_none() && report.writer.is_none());
    // Nothing here flushes, so there is no disk to probe.
    assert!(report.flush.is_none() && report.flush_error.is_none());
    assert!(report.render().contains("n/a") && !report.render().contains("disk flush"));
}

#[test]
fn the_flush_probe_removes_its_file_and_fails_with_the_reason() {
    let dir = TempDir::new().expect("temporary directory");
    let flush = probe_flush(dir.path()).expect("probe");
    assert!(flush.one_page_ms.is_finite() && flush.scattered_ms.is_finite());
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    let missing = dir.path().join("missing");
    let err = probe_flush(&missing).expect_err("no such directory");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_mix_reports_errors_instead_of_failing_when_the_route_is_missing_or_refuses() {
    let mut a = args(Mix::Client);
    a.storage = Some("memory".into());
    a.requests = Some(10);
    let report = run(&a.plan().expect("plan")).await.expect("run");
    sane(&report.operations[0]);
    let create = &report.operations[1];
    assert_eq!(create.ok + create.errors, 4, "{create:?}");
    assert!(create.errors == 0 || !create.error_samples.is_empty(), "{create:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_url_is_one_clear_error() {
    // A port that was free a moment ago: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut a = args(Mix::V1);
    a.url = vec![format!("http://127.0.0.1:{port}")];
    let err = run(&a.plan().expect("plan")).await.expect_err("nothing listens");
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn cpu_time_is_read_from_a_proc_stat_line_whatever_the_command_name() {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 3 0 250 75 0 0 20 0 9 0 100 1 1";
    assert_eq!(stat_cpu(line), Some(Duration::from_millis(3250)));
    assert_eq!(stat_cpu("4242 (lethe) S 1 2"), None);
    assert_eq!(stat_cpu("no parenthesis at all"), None);
    let this = CpuTimes::now().expect("/proc on Linux");
    let later = CpuTimes { process: this.process + Duration::from_millis(500), writer: None };
    let used = later.since(&this, Duration::from_millis(250));
    assert!((used.cores - 2.0).abs() < 1e-9 && used.writer_cores.is_none());
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    for url in ["ftp://x", "https://example.com", "not a url", "http://"] {
        let mut a = args(Mix::V1);
        a.url = vec![url.into()];
        assert!(a.plan().is_err(), "{url}");
    }
    let mut a = args(Mix::V1);
    a.url = vec!["http://127.0.0.1:1/base/".into()];
    a.bcrypt_cost = Some(5);
    assert!(a.plan().unwrap_err().contains("in-process"));
    a.bcrypt_cost = None;
    assert!(a.plan().is_ok());
    let e = Endpoint::parse("http://127.0.0.1:1/base/").unwrap();
    assert_eq!((e.prefix.as_str(), e.port, e.base.as_str()), ("/base", 1, "http://127.0.0.1:1/base"));
    let mut a = args(Mix::V1);
    a.concurrency = 0;
    assert!(a.plan().is_err());
    let mut a = args(Mix::V1);
    a.storage = Some("floppy".into());
    assert!(a.plan().unwrap_err().contains("redb, memory or redis"));
    let mut a = args(Mix::V1);
    a.duration = Some(f64::NAN);
    assert!(a.plan().is_err());
    let mut a = args(Mix::V1);
    a.redis_url = Some("redis://127.0.0.1:1/0".into());
    assert_eq!(a.plan().unwrap_err(), "--redis-url applies to --storage redis only");
    a.storage = Some("redis".into());
    assert!(a.plan().is_ok());
    a.redis_url = Some("http://127.0.0.1:1/".into());
    assert!(a.plan().unwrap_err().contains("redis://"));
    a.url = vec!["http://127.0.0.1:1/".into()];
    a.storage = None;
    assert!(a.plan().unwrap_err().contains("in-process"));
}
