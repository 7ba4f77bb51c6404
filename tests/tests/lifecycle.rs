//! The VMM stops cleanly: two VMs built and run one after the other in one process leave no threads or
//! file descriptors behind — a Linux-style VM, and a partitioned VM (its HRT threads, doorbell relay,
//! eventfds and second KVM VM). (Its own test binary, so no other test's threads blur the count.)

use std::time::Duration;

use duet_tests::*;

#[test]
fn two_vms_in_a_row_leave_nothing_behind() {
    let dir = scratch("lifecycle");
    let mut a = asm();
    exit_with(&mut a, 5);
    let kernel = tiny_kernel(a);
    let mut cfg = tiny_config(&dir, &kernel);
    cfg.ros.as_mut().expect("tiny_config makes a [ros] VM").vcpus = 2;
    // The same ROS beside duet's HRT (2 cores): it exits while the HRT may still be booting.
    let mut partitioned = cfg.clone();
    let mut hrt = config::HrtConfig::new(guest_image("hrt.elf"));
    hrt.vcpus = 2;
    hrt.memory = 64 << 20;
    partitioned.hrt = Some(hrt);
    for cfg in [&cfg, &partitioned] {
        // Warm up once: the kick signal handler and logger are installed on first use.
        let first = run(cfg, Duration::from_secs(60));
        assert_eq!(first.reason, vmm::ExitReason::Exit(5));
        let (fds_before, threads_before) = (open_fds(), threads());
        for _ in 0..2 {
            let out = run(cfg, Duration::from_secs(60));
            assert_eq!(out.reason, vmm::ExitReason::Exit(5));
        }
        assert_eq!(open_fds(), fds_before, "file descriptors leaked (partitioned: {})", cfg.hrt.is_some());
        assert_eq!(threads(), threads_before, "threads leaked (partitioned: {})", cfg.hrt.is_some());
    }
}
