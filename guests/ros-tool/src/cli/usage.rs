//! The help text.

/// `hvm help`.
pub const USAGE: &str = "\
usage: hvm COMMAND [ARGS]    (numbers: decimal or 0x-hex; SECS may have a fraction)
  info                                   ABI version and the partition description
  vsock listen PORT | send CID PORT MSG  AF_VSOCK echo endpoints for tests (no hypercall)
  blkbench DEV [SEQ_MIB] [RAND_OPS]      O_DIRECT 1 MiB sequential and 4 KiB random reads (no hypercall)
  status                                 HRT state: state=NAME detail=N boots=N
  boot    [--wait [SECS]]                boot the HRT, wait until ready (default 30 s; 0 = no wait)
  reboot  [--wait [SECS]]                reboot the HRT from its image, wait until ready
  replace FILE [--wait [SECS]]           replace the HRT image with FILE, boot it, wait until ready
  invoke  [--core N | --all] [--async] [--notify] [--timeout SECS] FUNC [ARG]
                                         run HRT function FUNC(ARG); sync waits for the result (10 s)
  result  CORE                           the last finished invoke on CORE (INVOKE_RESULT)
  merge   [--core N | --all]             share this process's user half with the HRT core(s) (MERGE;
                                         useful only as a probe: the process exits right after)
  unmerge [--core N | --all]             give the HRT core(s) their own lower half back (UNMERGE)
  merge-test [--core N]                  MERGE, the HRT reads and flips a word of this process by its
                                         virtual address (functions 12, 13), a never-touched page is
                                         not mapped there, UNMERGE, an echo invoke
  forward-test [getpid|split|stress|stress-lseek|corrupt|latency|split-bench|scaling]
               [--mode poll|notify|adaptive] [--spin-us N] [--core N] [--calls N] [--io]
                                         be the proxy (channels, MERGE, attach) for a forwarding test:
                                         getpid: HRT function 14 forwards getpid N times (1000);
                                         split: ROS functions run on the HRT (write, files, a 1 MiB
                                         read, page-fault forwarding); stress: every HRT core
                                         forwards echo pseudo-calls (stress-lseek: lseek), N calls
                                         in all (poll 1000000, else 20000);
                                         corrupt: each side corrupts the ring, the other detects it;
                                         latency: N timed echo and getpid round trips (1000),
                                         with --io also pread/pwrite on tmpfs and read/write on a
                                         pipe of 1 B, 4 KiB, 64 KiB;
                                         split-bench: N null split round trips (at most 1000),
                                         writes and fresh-page touches from a split function,
                                         and the same natively; scaling: N echo calls per core
                                         with 1..all HRT cores at once.
                                         Every timed phase is bracketed by debug-port marks.
                                         Mode: the VM's config unless --mode
  events                                 take every pending event
  post    EVENT [PAYLOAD]                post an event to the HRT
  exit    STATUS                         end the VM with STATUS
  raw     OP [RBX RCX RDX RSI RDI]       one hypercall with any register values (a probe; exit 0)
  flood   N                              N VERSION hypercalls
  probe-mem BASE LEN [--stride N]        map /dev/mem at BASE (page-aligned), read every N-th byte's
                                         u64 (default 8: all), write a pattern there, read again;
                                         counts what was not all ones (the HRT's memory must read so)
  bench   null|exit|getpid|invoke|pingpong|invoke-poll|hrt-null|invoke-async|reboot|doorbell|io
          [--core N] [--iters N] [--warmup N]
                                         latency: VERSION, a plain port exit, a native getpid, a sync echo invoke,
                                         a ping-pong with HRT function 8 through shared memory,
                                         an echo through HRT function 11's polled channel (no exit),
                                         VERSION from the HRT's ring 0 (function 10), an echo
                                         invoke polled with INVOKE_RESULT, HRT_REBOOT until ready,
                                         a ping-pong with HRT function 23, which sleeps until its
                                         doorbell rings, the I/O workloads of forward-test latency
                                         --io natively (reboot: 20 iterations, 1 warm-up by default; hrt-null:
                                         --warmup counts samples, one invoke's worth by default)
  help                                   this text
Needs root (ioperm of ports 0xe4-0xeb and 0xf8-0xfb, mlockall); bench pingpong, invoke-poll and hrt-null read
/proc/self/pagemap.";
