//! What KVM this host has, and the Linux boot settings that keep a guest off instructions a PVM host
//! cannot emulate (see `docs/platform.md`).

use std::fmt;
use std::path::Path;

/// The flavor of the host's KVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvmFlavor {
    /// Hardware virtualization on Intel VT-x (`kvm_intel`).
    Intel,
    /// Hardware virtualization on AMD-V (`kvm_amd`).
    Amd,
    /// PVM (`kvm_pvm`): guest ring 0 is emulated, some instructions cannot run at all.
    Pvm,
    /// `/dev/kvm` exists but no known vendor module is loaded.
    Unknown,
}

impl KvmFlavor {
    /// Detects the flavor from the loaded kernel modules (`/sys/module`).
    pub fn detect() -> Self {
        Self::detect_in(Path::new("/sys/module"))
    }

    /// Detects the flavor from a `/sys/module`-like directory (for tests).
    pub fn detect_in(sys_module: &Path) -> Self {
        // PVM first: a PVM host may also have kvm_intel/kvm_amd loaded for its own use.
        if sys_module.join("kvm_pvm").exists() {
            KvmFlavor::Pvm
        } else if sys_module.join("kvm_intel").exists() {
            KvmFlavor::Intel
        } else if sys_module.join("kvm_amd").exists() {
            KvmFlavor::Amd
        } else {
            KvmFlavor::Unknown
        }
    }

    /// Whether guest ring 0 is emulated instruction by instruction.
    pub fn emulates_ring0(self) -> bool {
        self == KvmFlavor::Pvm
    }

    /// Short name used in reports and JSON (`kvm_intel`, `kvm_amd`, `kvm_pvm`, `unknown`).
    pub fn module(self) -> &'static str {
        match self {
            KvmFlavor::Intel => "kvm_intel",
            KvmFlavor::Amd => "kvm_amd",
            KvmFlavor::Pvm => "kvm_pvm",
            KvmFlavor::Unknown => "unknown",
        }
    }
}

impl fmt::Display for KvmFlavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            KvmFlavor::Intel => "hardware KVM (Intel VT-x, kvm_intel)",
            KvmFlavor::Amd => "hardware KVM (AMD-V, kvm_amd)",
            KvmFlavor::Pvm => "PVM (kvm_pvm: guest ring 0 emulated)",
            KvmFlavor::Unknown => "KVM of unknown flavor",
        };
        f.write_str(text)
    }
}

/// The host CPU's model name, from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// CPU features Linux is told not to use on a PVM host (`clearcpuid=`): each one is, or leads Linux to,
/// an instruction PVM cannot emulate in guest ring 0 (measured; see `docs/platform.md`).
pub const PVM_CLEARCPUID: &[&str] = &[
    "popcnt", "aes", "pclmulqdq", "avx", "avx2", "avx512f", "rdtscp", "bmi1", "bmi2", "sse4_2", "sse4_1",
    "ssse3", "sse3", "xsave", "movbe", "smap", "xsaveopt", "xsavec", "xsaves", "fma", "f16c", "sha_ni",
    "gfni", "vaes", "vpclmulqdq",
];

/// The platform settings a VM boots with, resolved from the config and the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSettings {
    /// The host's KVM.
    pub flavor: KvmFlavor,
    /// Whether the PVM workarounds apply.
    pub workarounds: bool,
    /// What CPUID hides: CMPXCHG16B and KVM's `vmcall`-based PV features on PVM.
    pub cpuid_mask: crate::vcpu::setup::CpuidMask,
    /// Features for `clearcpuid=` (empty: none).
    pub clearcpuid: Vec<String>,
}

impl PlatformSettings {
    /// Resolves the settings for `flavor` from the config's `[platform]` section.
    pub fn resolve(flavor: KvmFlavor, cfg: &config::PlatformConfig) -> Self {
        let workarounds = match cfg.pvm_workarounds {
            config::Workarounds::On => true,
            config::Workarounds::Off => false,
            config::Workarounds::Auto => flavor == KvmFlavor::Pvm,
        };
        let clearcpuid = if workarounds {
            cfg.clearcpuid
                .clone()
                .unwrap_or_else(|| PVM_CLEARCPUID.iter().map(|s| s.to_string()).collect())
        } else {
            Vec::new()
        };
        let cpuid_mask = crate::vcpu::setup::CpuidMask { cx16: workarounds, pv_hypercalls: workarounds, la57: false };
        PlatformSettings { flavor, workarounds, cpuid_mask, clearcpuid }
    }

    /// Parameters duet appends to the kernel command line: a clean stop on reboot and panic (the i8042
    /// reset line), and on PVM hosts the `clearcpuid=` list.
    pub fn linux_cmdline_params(&self) -> Vec<String> {
        let mut p = vec!["reboot=k".to_string(), "panic=-1".to_string()];
        if !self.clearcpuid.is_empty() {
            p.push(format!("clearcpuid={}", self.clearcpuid.join(",")));
        }
        p
    }

    /// The full Linux command line: the user's kernel parameters, then duet's parameters the user did not
    /// set, then the user's ` -- ` part (arguments for init) unchanged.
    pub fn linux_cmdline(&self, user: &str) -> String {
        let words: Vec<&str> = user.split_whitespace().collect();
        let split = words.iter().position(|w| *w == "--").unwrap_or(words.len());
        let (kernel, init) = words.split_at(split);
        let mut line: Vec<String> = kernel.iter().map(|w| w.to_string()).collect();
        for param in self.linux_cmdline_params() {
            let key = param.split('=').next().unwrap_or(&param).to_string();
            if !kernel.iter().any(|w| w.split('=').next() == Some(key.as_str())) {
                line.push(param);
            }
        }
        line.extend(init.iter().map(|w| w.to_string()));
        line.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(modules: &[&str]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("duet-sysmod-{}-{}", std::process::id(), modules.join("-")));
        let _ = std::fs::remove_dir_all(&dir);
        for m in modules {
            std::fs::create_dir_all(dir.join(m)).expect("mkdir");
        }
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn flavor_detection_prefers_pvm() {
        assert_eq!(KvmFlavor::detect_in(&sys(&["kvm", "kvm_pvm", "kvm_intel"])), KvmFlavor::Pvm);
        assert_eq!(KvmFlavor::detect_in(&sys(&["kvm", "kvm_intel"])), KvmFlavor::Intel);
        assert_eq!(KvmFlavor::detect_in(&sys(&["kvm", "kvm_amd"])), KvmFlavor::Amd);
        assert_eq!(KvmFlavor::detect_in(&sys(&["kvm"])), KvmFlavor::Unknown);
    }

    #[test]
    fn workarounds_follow_the_flavor_unless_forced() {
        let auto = config::PlatformConfig { pvm_workarounds: config::Workarounds::Auto, clearcpuid: None };
        let pvm = PlatformSettings::resolve(KvmFlavor::Pvm, &auto);
        assert!(pvm.workarounds && pvm.cpuid_mask.cx16 && pvm.cpuid_mask.pv_hypercalls);
        assert!(pvm.clearcpuid.iter().any(|f| f == "xsave"));
        let hw = PlatformSettings::resolve(KvmFlavor::Intel, &auto);
        assert!(!hw.workarounds && hw.clearcpuid.is_empty());
        let forced = config::PlatformConfig {
            pvm_workarounds: config::Workarounds::On,
            clearcpuid: Some(vec!["popcnt".into()]),
        };
        assert_eq!(PlatformSettings::resolve(KvmFlavor::Amd, &forced).clearcpuid, vec!["popcnt".to_string()]);
        let off = config::PlatformConfig { pvm_workarounds: config::Workarounds::Off, clearcpuid: None };
        assert!(!PlatformSettings::resolve(KvmFlavor::Pvm, &off).cpuid_mask.cx16);
    }

    #[test]
    fn cmdline_gets_duet_params_without_overriding_the_user() {
        let auto = config::PlatformConfig { pvm_workarounds: config::Workarounds::Auto, clearcpuid: None };
        let pvm = PlatformSettings::resolve(KvmFlavor::Pvm, &auto);
        let line = pvm.linux_cmdline("console=ttyS0 panic=5");
        assert!(line.starts_with("console=ttyS0 panic=5 reboot=k clearcpuid=popcnt,"), "{line}");
        assert!(!line.contains("panic=-1"));
        let hw = PlatformSettings::resolve(KvmFlavor::Intel, &auto);
        assert_eq!(hw.linux_cmdline(""), "reboot=k panic=-1");
    }

    #[test]
    fn duet_params_stay_before_the_init_arguments() {
        let auto = config::PlatformConfig { pvm_workarounds: config::Workarounds::Auto, clearcpuid: None };
        let hw = PlatformSettings::resolve(KvmFlavor::Intel, &auto);
        assert_eq!(hw.linux_cmdline("quiet -- echo a -- b"), "quiet reboot=k panic=-1 -- echo a -- b");
        assert_eq!(hw.linux_cmdline("-- sh"), "reboot=k panic=-1 -- sh");
        // A user setting after "--" belongs to init and does not count as the kernel's.
        assert_eq!(hw.linux_cmdline("x -- panic=1"), "x reboot=k panic=-1 -- panic=1");
    }
}
