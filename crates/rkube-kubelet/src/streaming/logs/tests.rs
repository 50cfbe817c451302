use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const LOG: &str = "\
2024-05-01T10:00:00.000000001Z stdout F one
2024-05-01T10:00:01.5Z stderr F two
2024-05-01T10:00:02.123Z stdout P thr
2024-05-01T10:00:02.124Z stdout F ee
2024-05-01T10:00:03Z stdout F four
";

fn opts(q: &str) -> LogOptions {
    LogOptions::from_query(
        &Query::parse(Some(q)),
        "2024-05-01T10:00:04Z".parse().unwrap(),
    )
    .unwrap()
}

struct TempLog(PathBuf);

impl TempLog {
    fn new(content: &str) -> TempLog {
        let p = std::env::temp_dir().join(format!(
            "rkube-logs-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&p, content).unwrap();
        TempLog(p)
    }
}

impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("1"));
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

async fn read_all(path: &Path, o: LogOptions, running: Option<RunningCheck>) -> String {
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(stream(path.to_path_buf(), o, running, tx));
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.extend_from_slice(&b);
    }
    task.await.unwrap().unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn records_parse() {
    let r = parse_record(b"2024-05-01T10:00:02.123Z stdout P thr\n").unwrap();
    assert!(r.partial);
    assert_eq!(r.text, b"thr");
    assert_eq!(r.stream, "stdout");
    let r = parse_record(b"2024-05-01T10:00:00Z stderr F \n").unwrap();
    assert_eq!(r.text, b"\n");
    assert!(parse_record(b"garbage\n").is_none());
    assert!(parse_record(b"2024-05-01T10:00:00Z stdin F x\n").is_none());
    assert_eq!(
        format_time("2024-05-01T10:00:01.5Z".parse().unwrap()),
        "2024-05-01T10:00:01.500000000Z"
    );
}

#[test]
fn option_validation() {
    let now: Timestamp = "2024-05-01T10:00:04Z".parse().unwrap();
    let bad = |q: &str| LogOptions::from_query(&Query::parse(Some(q)), now).unwrap_err();
    assert!(bad("tailLines=-1").contains("tailLines"));
    assert!(bad("limitBytes=0").contains("limitBytes"));
    assert!(bad("sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z").contains("at most one"));
    assert!(bad("sinceTime=yesterday").contains("sinceTime"));
    assert!(bad("tailLines=x").contains("integer"));
    let o = opts("sinceSeconds=2&follow=true&timestamps=true");
    assert_eq!(o.since, Some("2024-05-01T10:00:02Z".parse().unwrap()));
    assert!(o.follow && o.timestamps && !o.previous);
}

#[test]
fn tail_counts_newlines_from_the_end() {
    let t = TempLog::new("a\nb\nc\n");
    let mut f = std::fs::File::open(&t.0).unwrap();
    assert_eq!(tail_start(&mut f, 0).unwrap(), 6);
    assert_eq!(tail_start(&mut f, 1).unwrap(), 4);
    assert_eq!(tail_start(&mut f, 3).unwrap(), 0);
    assert_eq!(tail_start(&mut f, 10).unwrap(), 0);
    // Across blocks.
    let big: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    let t = TempLog::new(&big);
    let mut f = std::fs::File::open(&t.0).unwrap();
    let start = tail_start(&mut f, 1234).unwrap() as usize;
    assert_eq!(big[start..].lines().count(), 1234);
    assert!(big[start..].starts_with("line 3766\n"));
}

#[tokio::test]
async fn reads_with_the_kubelets_options() {
    let t = TempLog::new(LOG);
    assert_eq!(
        read_all(&t.0, opts(""), None).await,
        "one\ntwo\nthree\nfour\n"
    );
    assert_eq!(
        read_all(&t.0, opts("tailLines=2"), None).await,
        "ee\nfour\n"
    );
    assert_eq!(read_all(&t.0, opts("tailLines=0"), None).await, "");
    assert_eq!(
        read_all(&t.0, opts("sinceTime=2024-05-01T10:00:01Z"), None).await,
        "two\nthree\nfour\n"
    );
    assert_eq!(read_all(&t.0, opts("limitBytes=6"), None).await, "one\ntw");
    assert_eq!(read_all(&t.0, opts("stream=Stderr"), None).await, "two\n");
    assert_eq!(
        read_all(&t.0, opts("timestamps=true&tailLines=1"), None).await,
        "2024-05-01T10:00:03.000000000Z four\n"
    );
    // Lines that are not CRI records are skipped.
    let t = TempLog::new("junk\n2024-05-01T10:00:00Z stdout F ok\n");
    assert_eq!(read_all(&t.0, opts(""), None).await, "ok\n");
}

fn running_flag() -> (Arc<AtomicBool>, RunningCheck) {
    let flag = Arc::new(AtomicBool::new(true));
    let f = flag.clone();
    let check: RunningCheck = Box::new(move || {
        let f = f.clone();
        Box::pin(async move { f.load(Ordering::SeqCst) })
    });
    (flag, check)
}

#[tokio::test]
async fn follow_sees_growth_and_rotation_and_ends_with_the_container() {
    use std::io::Write;
    let t = TempLog::new("2024-05-01T10:00:00Z stdout F first\n");
    let (running, check) = running_flag();
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(stream(t.0.clone(), opts("follow=true"), Some(check), tx));
    let mut got = String::new();
    let mut wait_for = async |needle: &str, got: &mut String| {
        while !got.contains(needle) {
            let b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("output in time")
                .expect("stream open");
            got.push_str(std::str::from_utf8(&b).unwrap());
        }
    };
    wait_for("first\n", &mut got).await;
    // A line written in two pieces is shown once complete.
    let mut f = std::fs::OpenOptions::new().append(true).open(&t.0).unwrap();
    f.write_all(b"2024-05-01T10:00:01Z stdout F sec").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.write_all(b"ond\n").unwrap();
    wait_for("second\n", &mut got).await;
    // Rotation: the file is renamed and a new one takes its path.
    std::fs::rename(&t.0, t.0.with_extension("1")).unwrap();
    std::fs::write(&t.0, "2024-05-01T10:00:02Z stdout F third\n").unwrap();
    wait_for("third\n", &mut got).await;
    assert_eq!(got, "first\nsecond\nthird\n");
    // The container stops after a last line: it is still shown, then the stream ends.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&t.0)
        .unwrap()
        .write_all(b"2024-05-01T10:00:03Z stderr F last\n")
        .unwrap();
    running.store(false, Ordering::SeqCst);
    wait_for("last\n", &mut got).await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("follow ends once the container stopped")
        .unwrap()
        .unwrap();
}
