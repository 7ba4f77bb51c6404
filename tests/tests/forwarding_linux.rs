//! Syscall forwarding end to end with a real Linux ROS (duet's lean test kernel) and duet's HRT
//! (docs/forwarding.md): the `hvm` tool in the guest is the proxy (guests/ros-tool/src/proxy.rs).
//! One boot per configured mode, each running every forwarding check it can, since Linux boots
//! are expensive where guest ring 0 is emulated:
//! - forwarded `getpid` answers the proxy's pid;
//! - split execution: ROS functions run at CPL3 on an HRT core print through a forwarded
//!   `write()`, do open/write/lseek/read/close on a ROS file with buffers in merged memory, read
//!   1 MiB straight into merged memory, and touch never-touched mmap memory (page-fault
//!   forwarding);
//! - every HRT core forwarding at once (`lseek` with per-core offsets, every answer checked);
//! - a ring corrupted from either side is detected, and both sides keep running.

use std::time::Duration;

use vmm::ExitReason;

/// Generous: on a PVM host guest ring 0 is emulated and a boot takes about a minute.
const LIMIT: Duration = Duration::from_secs(1500);

/// One Linux VM at a time (two emulated-ring-0 guests at once saturate a 2-core host).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn partitioned(hrt_vcpus: u32, mode: config::ForwardMode, script: &str) -> (vmm::Outcome, String) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut cfg = duet_tests::linux_partitioned_config(hrt_vcpus, script);
    if let Some(hrt) = cfg.hrt.as_mut() {
        hrt.forward = mode;
    }
    let out = vmm::Vm::new(&cfg).expect("build the VM").run(Some(LIMIT)).expect("run the VM");
    let text = out.console_text();
    (out, text)
}

fn has(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in the console:\n{text}");
}

/// The line starting with `prefix`, echoed to the test's output (the figures in it are the first
/// numbers of the forwarding path).
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_default();
    assert!(!line.is_empty(), "no {prefix:?} line in the console:\n{text}");
    eprintln!("{line}");
    line
}

fn field(line: &str, name: &str) -> u64 {
    let v = line.split_whitespace().find_map(|w| w.strip_prefix(name));
    v.and_then(|v| v.parse().ok()).expect("a decimal field in the line (echoed above)")
}

#[test]
fn poll_mode_forwards_getpid_split_execution_stress_and_detects_corruption() {
    let script = "hvm info; hvm forward-test getpid; hvm forward-test split; hvm forward-test stress; \
        hvm forward-test stress-lseek --calls 400; hvm forward-test corrupt; hvm forward-test latency --io --calls 100; \
        hvm forward-test split-bench --calls 50; hvm forward-test scaling --calls 2000; \
        hvm bench doorbell --iters 200 --warmup 10; hvm invoke --all 1 41; exit 0";
    duet_tests::check_with_sigsegv_retry(
        || partitioned(2, config::ForwardMode::Poll, script),
        |out, text| {
            assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
            assert!(!text.lines().any(|l| l.starts_with("hvm: ")), "an hvm command failed:\n{text}");
            let getpid = line(text, "forward-test getpid ok mode=poll ");
            assert_eq!(field(getpid, "hrt_pid="), field(getpid, "pid="), "{getpid}");
            assert_eq!(field(getpid, "served="), 1000, "{getpid}");
            // Split execution: the ROS function's write() reached the console through the proxy.
            has(text, "split: hello from a ROS function on the HRT, through a forwarded write()");
            line(text, "split hello ok ");
            line(text, "split files ok bytes=10000 ");
            line(text, "split read ok bytes=1048576 ");
            let touch = line(text, "split touch ok pages=64 resident_before=0 ");
            assert!(field(touch, "page_faults=") >= 64, "{touch}");
            // CPL3 on the HRT: split code cannot make port I/O (hypercalls, the debug port).
            line(text, "split port-io ok status=0x10d");
            line(text, "forward-test split ok mode=poll ");
            // Both HRT cores at once: a million echo pseudo-calls (every answer checked, none lost or
            // duplicated), then real system calls (lseek answers the offset asked for).
            let stress = line(text, "forward-test stress ok mode=poll call=echo cores=2 ");
            assert_eq!(field(stress, "calls="), 1_000_000, "{stress}");
            let stress = line(text, "forward-test stress ok mode=poll call=lseek cores=2 ");
            assert_eq!(field(stress, "calls="), 400, "{stress}");
            has(text, "corrupt-test hrt-side detected=yes core=0");
            has(text, "corrupt-test ros-side detected=yes core=0 hrt_alive=yes");
            // The benchmark's workloads run and check their answers: the echo pseudo-call, getpid,
            // pread/pwrite on tmpfs and read/write on a pipe up to 64 KiB, forwarded from an HRT
            // core; split execution timed (write(), fresh-page faults), natively too; throughput
            // with 1 and 2 cores; the HRT doorbell round trip.
            for name in ["echo", "getpid", "read-tmpfs-1", "write-tmpfs-4096", "read-pipe-65536", "write-pipe-65536"] {
                line(text, &format!("bench=forward-{name}-poll "));
            }
            line(text, "forward-test split-bench ok mode=poll ");
            for name in ["split-null-poll", "split-write-poll", "split-fault-poll", "native-split-write", "native-fault"] {
                line(text, &format!("bench={name} n="));
            }
            line(text, "bench-scaling cores=2 mode=poll calls=4000 ");
            line(text, "doorbell.rounds=210 expected=210 ");
            // Every phase was bracketed by marks that carry each vCPU's KVM counters, of both
            // partitions: the echo phase's 100 calls cost the ROS at least its end mark's exit.
            let kvm = duet_benches::report::phase_counts(text, &out.marks).expect("phases pair with marks");
            let echo = kvm.get("forward-echo-poll").expect("KVM counters for the echo phase");
            assert!(echo.ros_exits * echo.calls as f64 >= 1.0, "{echo:?}");
            let hrt_vcpus = out.marks.iter().map(|m| m.vcpus.iter().filter(|v| v.partition == vmm::stats::Partition::Hrt).count()).max();
            assert_eq!(hrt_vcpus, Some(2), "both HRT vCPUs sampled at the marks");
            eprintln!("forward-echo-poll KVM counters per call: {echo:?}");
            has(text, "forward.mode=poll");
            assert_eq!(text.matches("result=0x2a (42)").count(), 2, "every core serves afterwards:\n{text}");
        },
    );
}

#[test]
fn notify_and_adaptive_modes_sleep_on_doorbells_and_forward_everything() {
    // The config says notify: the proxy takes the mode from PARTITION_INFO; adaptive is asked for
    // on the command line (with a spin long enough for this host's emulated HRT ring 0).
    let script = "hvm info; hvm forward-test getpid --calls 200; hvm forward-test split; \
        hvm forward-test stress --calls 4000; hvm forward-test corrupt; hvm forward-test latency --calls 200; \
        hvm forward-test getpid --mode adaptive --spin-us 2000 --calls 200; \
        hvm forward-test stress --mode adaptive --spin-us 2000 --calls 4000; \
        hvm forward-test latency --mode adaptive --spin-us 2000 --calls 200; hvm forward-test split-bench --calls 30; \
        hvm invoke --all 1 41; exit 0";
    duet_tests::check_with_sigsegv_retry(
        || partitioned(2, config::ForwardMode::Notify, script),
        |out, text| {
            assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
            assert!(!text.lines().any(|l| l.starts_with("hvm: ")), "an hvm command failed:\n{text}");
            has(text, "forward.mode=notify forward.spin_us=100");
            has(text, "doorbells: hrt=0xe8 ros=0xec");
            for mode in ["notify", "adaptive"] {
                let getpid = line(text, &format!("forward-test getpid ok mode={mode} "));
                assert_eq!(field(getpid, "hrt_pid="), field(getpid, "pid="), "{getpid}");
                assert_eq!(field(getpid, "served="), 200, "{getpid}");
                let stress = line(text, &format!("forward-test stress ok mode={mode} call=echo cores=2 "));
                assert_eq!(field(stress, "calls="), 4000, "{stress}");
                line(text, &format!("bench=forward-getpid-{mode} "));
            }
            // In notify mode both sides really slept and were woken by the doorbells: the HRT
            // sleeps at once after every request, so the proxy rang it every time; the proxy
            // slept too (not every time: the next request may come during its last look).
            let getpid = line(text, "forward-test getpid ok mode=notify ");
            assert!(field(getpid, "rings=") >= 200 && field(getpid, "sleeps=") >= 20, "{getpid}");
            has(text, "split: hello from a ROS function on the HRT, through a forwarded write()");
            line(text, "split read ok bytes=1048576 ");
            let touch = line(text, "split touch ok pages=64 resident_before=0 ");
            assert!(field(touch, "page_faults=") >= 64, "{touch}");
            line(text, "forward-test split ok mode=notify ");
            // Split execution timed while sleeping: every sample of the page-fault run reached
            // the process (the tool fails otherwise).
            line(text, "forward-test split-bench ok mode=notify ");
            line(text, "bench=split-fault-notify n=30 ");
            has(text, "corrupt-test hrt-side detected=yes core=0");
            has(text, "corrupt-test ros-side detected=yes core=0 hrt_alive=yes");
            assert_eq!(text.matches("result=0x2a (42)").count(), 2, "every core serves afterwards:\n{text}");
        },
    );
}
