//! The VMM stops cleanly: two VMs built and run one after the other in one process leave no threads or
//! file descriptors behind. (Its own test binary, so no other test's threads blur the count.)

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
    // Warm up once: the kick signal handler and logger are installed on first use.
    let first = run(&cfg, Duration::from_secs(60));
    assert_eq!(first.reason, vmm::ExitReason::Exit(5));
    let (fds_before, threads_before) = (open_fds(), threads());
    for _ in 0..2 {
        let out = run(&cfg, Duration::from_secs(60));
        assert_eq!(out.reason, vmm::ExitReason::Exit(5));
    }
    assert_eq!(open_fds(), fds_before, "file descriptors leaked");
    assert_eq!(threads(), threads_before, "threads leaked");
}
