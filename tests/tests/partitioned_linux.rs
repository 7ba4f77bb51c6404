//! The partitioned VM with a real Linux ROS (duet's lean test kernel) driving duet's HRT from user space
//! with the `hvm` tool (guests/ros-tool): both kernels boot in one VM and each reports its own view;
//! a root process cannot read or write the HRT's memory through /dev/mem; the HRT runs functions,
//! faults on purpose, is rebooted and booted on request, and shares a process's address space
//! (MERGE: it reads and writes the process's memory by user pointer). Two Linux boots (1+1 and 1+2 vCPUs), each
//! running every check it can, since Linux boots are expensive where guest ring 0 is emulated.

use std::time::Duration;

use vmm::ExitReason;

/// Generous: on a PVM host guest ring 0 is emulated and a boot takes about a minute.
const LIMIT: Duration = Duration::from_secs(1500);

/// One Linux VM at a time: two emulated-ring-0 guests at once saturate a 2-core host, and the boots get
/// slower, not faster.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn partitioned(hrt_vcpus: u32, boot: config::HrtBoot, script: &str) -> (vmm::Outcome, String) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut cfg = duet_tests::linux_partitioned_config(hrt_vcpus, script);
    if let Some(hrt) = cfg.hrt.as_mut() {
        hrt.cmdline = "hello".into();
        hrt.boot = boot;
    }
    let out = vmm::Vm::new(&cfg).expect("build the VM").run(Some(LIMIT)).expect("run the VM");
    let text = out.console_text();
    (out, text)
}

fn has(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in the console:\n{text}");
}

#[test]
fn linux_drives_the_hrt_and_cannot_touch_its_memory() {
    let script = "hvm info; hvm status; hvm invoke 1 41; \
        a=$(hvm invoke 3); a=${a#*result=}; a=${a%% *}; echo canary-at $a; \
        echo ros-read $(devmem $a 64); devmem $a 64 0; devmem $a 32 0x5a5a5a5a; \
        hvm probe-mem $a 4096; hvm probe-mem 0x10000000 0x4000000 --stride 65536; \
        hvm invoke 2; \
        hvm invoke --timeout 3 5; echo invoke-fault-status $?; hvm status; hvm events; \
        hvm reboot --wait 60 && hvm invoke 1 1; hvm status; \
        hvm raw 99; hvm raw 5 0 0 9; hvm raw 1 0 616; hvm flood 2000; exit 0";
    duet_tests::check_with_sigsegv_retry(
        || partitioned(1, config::HrtBoot::AtStart, script),
        |out, text| {
            assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
            // Each kernel's own view: Linux sees one CPU and its 256 MiB; the HRT sees its cores and all memory.
            has(text, "duet-init: cpus online: 0 (1)");
            has(text, "hrt: hvm: hrt cores 1 apic ids 1");
            has(text, "hrt: hvm: hrt ram base=0x10000000 length=0x4000000");
            has(text, "hrt: hvm: ros ram base=0x0 length=0x10000000");
            has(text, "hrt: hello from the HRT");
            has(text, "hrt.cores=1");
            has(text, "hrt.ram=0x10000000+0x4000000");
            has(text, "state=ready detail=0 boots=1");
            has(text, "result=0x2a (42)");
            // Isolation: /dev/mem mappings of the HRT's canary page (every word) and of its whole RAM (every
            // 64 KiB) read all ones, before and after writing them, and the HRT's canary is intact afterwards.
            has(text, "ros-read 0xFFFFFFFFFFFFFFFF");
            has(text, "len=0x1000 stride=8 words=512 not_ones_before=0 not_ones_after=0 pattern_seen=0");
            has(text, "probe-mem base=0x10000000 len=0x4000000 stride=65536 words=1024 not_ones_before=0 not_ones_after=0 pattern_seen=0");
            has(text, "result=0x48525443414e4152");
            // A triple fault on purpose: no result, the HRT is faulted (1 = triple fault), Linux carries on.
            has(text, "invoke-fault-status 1");
            has(text, "state=faulted detail=1 boots=1");
            has(text, "name=hrt-fault");
            has(text, "result=0x2 (2)");
            has(text, "state=ready detail=0 boots=2");
            // Hostile calls from user space get errors; a flood is answered.
            has(text, "UNKNOWN_OP");
            has(text, "BAD_CPU");
            has(text, "BAD_ADDRESS");
            has(text, "flood=2000");
        },
    );
}

#[test]
fn linux_boots_the_hrt_on_request_and_invokes_every_core() {
    // Then the address-space merge: one process shares its user half with core 1 (which reads and
    // flips its word by virtual address, and finds a page it never touched not present); MERGE and
    // UNMERGE on every core from two processes; every core still serves afterwards. Between them the
    // first forwarded system call: core 0 (function 14) forwards getpid 1000 times through a
    // forwarding channel in a merged process, which serves it (the proxy).
    let script = "hvm status; hvm invoke 0 1; hvm boot --wait 60 && hvm invoke --all 7; \
        hvm merge-test --core 1; hvm forward-test --core 0; hvm merge --all; hvm unmerge --all; hvm invoke --all 1 41; hvm status; exit 0";
    duet_tests::check_with_sigsegv_retry(
        || partitioned(2, config::HrtBoot::OnRequest, script),
        |out, text| {
            assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
            has(text, "state=not-booted detail=0 boots=0");
            has(text, "BAD_STATE");
            has(text, "ready_after_us=");
            has(text, "core=0 seq=1 result=0x1 (1)");
            has(text, "core=1 seq=1 result=0x2 (2)");
            has(text, "hrt: hvm: hrt cores 2 apic ids 1,2");
            has(text, "state=ready detail=0 boots=1");
            let hrt_lines = text.lines().filter(|l| l.starts_with("hrt: hvm: 64-bit entry")).count();
            assert_eq!(hrt_lines, 1, "the HRT booted once, on request:\n{text}");
            // The merge: the HRT read the process's pattern by its virtual address and flipped it (the
            // process read the complement), and a page never touched was not mapped for it.
            let line = text.lines().find(|l| l.starts_with("merge-test ok ")).unwrap_or_default();
            assert!(!line.is_empty(), "no merge-test line:\n{text}");
            eprintln!("{line}");
            let field = |name: &str| -> u64 {
                let v = line.split_whitespace().find_map(|w| w.strip_prefix(name)).expect("the field in the merge-test line");
                u64::from_str_radix(v.trim_start_matches("0x"), 16).expect("a hex number in the merge-test line")
            };
            assert_eq!(field("hrt_read="), field("pattern="), "{line}");
            assert_eq!(field("flipped="), !field("pattern="), "{line}");
            has(text, "untouched=not-present");
            // The forwarded getpid answered the proxy's own pid, every one of the 1000 times.
            let line = text.lines().find(|l| l.starts_with("forward-test getpid ok ")).unwrap_or_default();
            assert!(!line.is_empty(), "no forward-test line:\n{text}");
            eprintln!("{line}");
            let field = |name: &str| -> u64 {
                let v = line.split_whitespace().find_map(|w| w.strip_prefix(name)).expect("the field in the forward-test line");
                v.parse().expect("a decimal number in the forward-test line")
            };
            assert_eq!(field("hrt_pid="), field("pid="), "{line}");
            assert_eq!(field("served="), 1000, "{line}");
            assert!(!text.contains("hvm: forward-test"), "{text}");
            for core in 0..2 {
                has(text, &format!("core={core} merge result=0"));
                has(text, &format!("core={core} unmerge result=0"));
            }
            assert_eq!(text.matches("result=0x2a (42)").count(), 2, "every core serves after the merges:\n{text}");
            assert!(!text.contains("hvm: merge"), "{text}");
        },
    );
}
