//! Tier 3: a real Linux (duet's lean test kernel) boots to duet's init on real KVM with 2 vCPUs; one boot
//! runs every check (Linux boots are expensive where guest ring 0 is emulated).

use std::time::Duration;

use duet_tests::guest_image;
use vmm::ExitReason;

/// Generous: on a PVM host guest ring 0 is emulated and a boot takes minutes.
const LIMIT: Duration = Duration::from_secs(1500);

#[test]
fn linux_boots_to_init_on_two_vcpus_and_exits_with_inits_status() {
    let mut ros = config::RosConfig::new(guest_image("vmlinux-test"));
    ros.vcpus = 2;
    ros.memory = 256 << 20;
    ros.initramfs = Some(guest_image("initramfs.cpio"));
    ros.cmdline = "console=ttyS0 quiet init_on_alloc=0 lpj=5000000 mitigations=off duet.expect_cpus=2 \
                   -- echo duet-check: \"$(cat /proc/cpuinfo | grep -c ^processor)\" processors; exit 7"
        .to_string();
    let mut cfg = config::Config::from_ros(ros);
    cfg.console.output = config::ConsoleOutput::Capture;
    cfg.console.input = false;

    duet_tests::check_with_sigsegv_retry(
        || {
            let out = vmm::Vm::new(&cfg).expect("build the VM").run(Some(LIMIT)).expect("run the VM");
            let text = out.console_text();
            (out, text)
        },
        check,
    );
}

fn check(out: &vmm::Outcome, console: &str) {
    let tail: String = console.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert_eq!(out.reason, ExitReason::Exit(7), "{} ({}); console tail:\n{tail}", out.reason, out.flavor);
    assert!(console.contains("duet-init: cpus online: 0-1 (2)"), "init saw both CPUs:\n{tail}");
    assert!(console.contains("duet-init: check cpus: ok"), "{tail}");
    assert!(console.contains("duet-check: 2 processors"), "the command ran in the guest's shell:\n{tail}");
    assert!(console.contains("duet-init: exit status 7"), "{tail}");
    let init = out.mark(devices::debug_port::MARK_INIT).expect("init marked the debug port");
    assert!(init < out.elapsed);
    eprintln!("boot to init: {:.3} s on {} ({} emulation fallbacks)", init.as_secs_f64(), out.flavor, out.emulation_fallbacks);
}
