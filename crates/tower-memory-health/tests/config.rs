//! `MemoryConfig`: every variable, its default, and every kind of bad value.

use std::time::Duration;

use tower_memory_health::{AllocatorProfile, BudgetCapacity, ConfigError, MemoryConfig, VARIABLES};

fn invalid(var: &str, value: &str) -> ConfigError {
    let err = MemoryConfig::from_vars([(var, value)])
        .expect_err(&format!("{var}={value:?} should be rejected"));
    assert_eq!(
        err.variable(),
        Some(VARIABLES.iter().copied().find(|v| *v == var).unwrap())
    );
    err
}

#[test]
fn defaults_when_nothing_is_set() {
    let c = MemoryConfig::from_vars(std::iter::empty::<(&str, &str)>()).unwrap();
    assert_eq!(c, MemoryConfig::default());
    assert!(c.monitoring_enabled);
    assert_eq!(c.warning_threshold, 0.75);
    assert_eq!(c.critical_threshold, 0.85);
    assert_eq!(c.check_interval, Duration::from_secs(30));
    assert!(c.reclaim_enabled);
    assert_eq!(c.reclaim_interval, Duration::from_secs(300));
    assert_eq!(c.limit_bytes, None);
    assert_eq!(c.allocator_profile, None);
    assert_eq!(c.profile_token, None);
}

#[test]
fn every_variable_is_read() {
    let c = MemoryConfig::from_vars([
        ("MEMORY_MONITORING_ENABLED", "false"),
        ("MEMORY_WARNING_THRESHOLD", "0.6"),
        ("MEMORY_CRITICAL_THRESHOLD", "0.9"),
        ("MEMORY_CHECK_INTERVAL", "5000"),
        ("MEMORY_RECLAIM_ENABLED", "no"),
        ("MEMORY_RECLAIM_INTERVAL", "60000"),
        ("MEMORY_LIMIT_BYTES", "536870912"),
        ("MEMORY_ALLOCATOR_PROFILE", "memory-first"),
        ("HEAP_PROFILE_TOKEN", "0123456789abcdef0123"),
        ("MEMORY_GOVERNOR_ENABLED", "off"),
        ("MEMORY_REQUEST_BUDGET", "0.6"),
        ("MEMORY_ADMISSION_QUEUE", "16"),
        ("MEMORY_ADMISSION_TIMEOUT", "250"),
        ("MEMORY_ADMISSION_FLOOR", "4096"),
        ("MEMORY_PARK_TIMEOUT", "100"),
        ("HEAP_PROFILE_DIR", "/var/lib/profiles"),
        ("HEAP_PROFILE_ON_EXIT", "/var/lib/profiles/exit.pb.gz"),
        ("MEMORY_RECLAIM_AGGRESSIVE", "false"),
        ("MEMORY_LOG_QUERY", "yes"),
        ("UNRELATED_VARIABLE", "whatever"),
    ])
    .unwrap();
    assert!(!c.monitoring_enabled);
    assert_eq!(c.warning_threshold, 0.6);
    assert_eq!(c.critical_threshold, 0.9);
    assert_eq!(c.check_interval, Duration::from_secs(5));
    assert!(!c.reclaim_enabled);
    assert_eq!(c.reclaim_interval, Duration::from_secs(60));
    assert_eq!(c.limit_bytes, Some(512 << 20));
    assert_eq!(c.allocator_profile, Some(AllocatorProfile::MemoryFirst));
    assert_eq!(c.profile_token.as_deref(), Some("0123456789abcdef0123"));
    assert!(!c.governor_enabled);
    assert_eq!(c.request_budget, BudgetCapacity::RatioOfLimit(0.6));
    assert_eq!(c.admission_queue, 16);
    assert_eq!(c.admission_timeout, Duration::from_millis(250));
    assert_eq!(c.admission_floor, 4096);
    assert_eq!(c.park_timeout, Duration::from_millis(100));
    assert_eq!(c.budget().max_queue(), 16);
    assert_eq!(
        c.heap_profile_dir.as_deref(),
        Some(std::path::Path::new("/var/lib/profiles"))
    );
    assert_eq!(
        c.profile_dir(),
        std::path::PathBuf::from("/var/lib/profiles")
    );
    assert_eq!(
        c.heap_profile_on_exit.as_deref(),
        Some(std::path::Path::new("/var/lib/profiles/exit.pb.gz"))
    );
    assert!(!c.reclaim_aggressive && !c.reclaim_on_warning);
    assert!(c.log_query_strings);
    // The token never shows in Debug output.
    assert!(!format!("{c:?}").contains("0123456789abcdef"));
    // 19 names, and the 3 deprecated ones; the STREAM_* and COMPRESSION_* variables moved to
    // tower-memory-stream-body and the umbrella crate.
    assert_eq!(VARIABLES.len(), 22);
}

#[test]
fn the_deprecated_cleanup_names_are_still_read() {
    let c = MemoryConfig::from_vars([
        ("MEMORY_CLEANUP_ENABLED", "false"),
        ("MEMORY_CLEANUP_INTERVAL", "60000"),
    ])
    .unwrap();
    assert!(!c.reclaim_enabled);
    assert_eq!(c.reclaim_interval, Duration::from_secs(60));
    // The new name wins over the old one.
    let c = MemoryConfig::from_vars([
        ("MEMORY_CLEANUP_INTERVAL", "60000"),
        ("MEMORY_RECLAIM_INTERVAL", "5000"),
    ])
    .unwrap();
    assert_eq!(c.reclaim_interval, Duration::from_secs(5));
    // An error names the variable that was set.
    invalid("MEMORY_CLEANUP_INTERVAL", "5s");
    invalid("MEMORY_RECLAIM_INTERVAL", "5s");
    for (old, new) in tower_memory_health::DEPRECATED_VARIABLES {
        assert!(VARIABLES.contains(old) && VARIABLES.contains(new));
    }
    let c = MemoryConfig::from_vars([("MEMORY_CLEANUP_AGGRESSIVE", "true")]).unwrap();
    assert!(c.reclaim_aggressive && c.reclaim_on_warning);
}

#[test]
fn the_aggressive_reclaim_preset_sets_what_is_unset_and_refuses_contradictions() {
    let c = MemoryConfig::from_vars([("MEMORY_RECLAIM_AGGRESSIVE", "true")]).unwrap();
    assert!(c.reclaim_aggressive && c.reclaim_enabled && c.reclaim_on_warning);
    assert_eq!(c.allocator_profile, Some(AllocatorProfile::MemoryFirst));
    assert_eq!(
        c.reclaim_interval,
        tower_memory_health::AGGRESSIVE_RECLAIM_INTERVAL
    );
    // An explicit interval wins over the preset's; an explicit memory-first agrees with it.
    let c = MemoryConfig::from_vars([
        ("MEMORY_RECLAIM_AGGRESSIVE", "on"),
        ("MEMORY_RECLAIM_INTERVAL", "15000"),
        ("MEMORY_ALLOCATOR_PROFILE", "memory-first"),
    ])
    .unwrap();
    assert_eq!(c.reclaim_interval, Duration::from_secs(15));
    // Contradictions are errors naming both variables, never silently resolved.
    for (second, value) in [
        ("MEMORY_RECLAIM_ENABLED", "false"),
        ("MEMORY_ALLOCATOR_PROFILE", "throughput"),
    ] {
        let err = MemoryConfig::from_vars([("MEMORY_RECLAIM_AGGRESSIVE", "true"), (second, value)])
            .unwrap_err();
        assert_eq!(err.variable(), Some("MEMORY_RECLAIM_AGGRESSIVE"));
        let text = err.to_string();
        assert!(text.contains(second) && text.contains(value), "{text}");
    }
    // The monitor gets the preset's reclaim on warning.
    let monitor = MemoryConfig::from_vars([("MEMORY_RECLAIM_AGGRESSIVE", "1")])
        .unwrap()
        .monitor_builder();
    assert!(
        format!("{monitor:?}").contains("reclaim_interval: 60s"),
        "{monitor:?}"
    );
    invalid("MEMORY_RECLAIM_AGGRESSIVE", "very");
    invalid("MEMORY_LOG_QUERY", "maybe");
    invalid("HEAP_PROFILE_DIR", " ");
}

#[test]
fn the_request_budget_is_bytes_or_a_fraction_of_the_limit() {
    let budget = |v: &str| MemoryConfig::from_vars([("MEMORY_REQUEST_BUDGET", v)]);
    assert_eq!(
        budget("268435456").unwrap().request_budget,
        BudgetCapacity::Bytes(256 << 20)
    );
    assert_eq!(budget("268435456").unwrap().budget().capacity(), 256 << 20);
    assert_eq!(
        budget(" 1.0 ").unwrap().request_budget,
        BudgetCapacity::RatioOfLimit(1.0)
    );
    assert_eq!(MemoryConfig::default().request_budget, BudgetCapacity::Auto);
    for bad in ["", "0", "0.0", "1.5", "-1", "60%", "256MiB", "NaN", "0.6.1"] {
        let err = invalid("MEMORY_REQUEST_BUDGET", bad);
        assert!(err.to_string().contains("fraction of the limit"), "{err}");
    }
    for (var, bad) in [
        ("MEMORY_ADMISSION_QUEUE", "-1"),
        ("MEMORY_ADMISSION_TIMEOUT", "5s"),
        ("MEMORY_ADMISSION_FLOOR", "64KiB"),
        ("MEMORY_PARK_TIMEOUT", "0"),
        ("MEMORY_GOVERNOR_ENABLED", "sometimes"),
    ] {
        invalid(var, bad);
    }
}

#[test]
fn booleans_accept_the_usual_spellings() {
    for (v, expected) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("on", true),
        (" false ", false),
        ("0", false),
        ("No", false),
        ("off", false),
    ] {
        let c = MemoryConfig::from_vars([("MEMORY_RECLAIM_ENABLED", v)]).unwrap();
        assert_eq!(c.reclaim_enabled, expected, "{v:?}");
    }
    // COMPRESSION_ENABLED: the umbrella crate's stack configuration (src/config.rs).
    for var in ["MEMORY_MONITORING_ENABLED", "MEMORY_RECLAIM_ENABLED"] {
        for bad in ["", "maybe", "2", "tru", "enabled"] {
            let err = invalid(var, bad);
            assert!(err.to_string().contains("true or false"), "{err}");
        }
    }
}

#[test]
fn thresholds_must_be_fractions() {
    for var in ["MEMORY_WARNING_THRESHOLD", "MEMORY_CRITICAL_THRESHOLD"] {
        for bad in [
            "", "abc", "0", "-0.5", "1.01", "75", "75%", "NaN", "inf", "0.7.5",
        ] {
            let err = invalid(var, bad);
            let text = err.to_string();
            assert!(
                text.contains(var) && text.contains(&format!("{bad:?}")),
                "{text}"
            );
        }
    }
    let c = MemoryConfig::from_vars([
        ("MEMORY_WARNING_THRESHOLD", "0.5"),
        ("MEMORY_CRITICAL_THRESHOLD", "1"),
    ])
    .unwrap();
    assert_eq!(c.critical_threshold, 1.0);
}

#[test]
fn warning_must_be_below_critical() {
    for (w, c) in [("0.9", "0.8"), ("0.85", "0.85")] {
        let err = MemoryConfig::from_vars([
            ("MEMORY_WARNING_THRESHOLD", w),
            ("MEMORY_CRITICAL_THRESHOLD", c),
        ])
        .unwrap_err();
        assert!(matches!(err, ConfigError::Conflict { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("MEMORY_WARNING_THRESHOLD") && text.contains("MEMORY_CRITICAL_THRESHOLD"),
            "{text}"
        );
    }
    // Against the other's default too.
    let err = MemoryConfig::from_vars([("MEMORY_WARNING_THRESHOLD", "0.9")]).unwrap_err();
    assert!(matches!(err, ConfigError::Conflict { .. }));
    assert_eq!(err.variable(), Some("MEMORY_WARNING_THRESHOLD"));
    // The variable named at fault is the one that was set (found by the config fuzz target).
    let err = MemoryConfig::from_vars([("MEMORY_CRITICAL_THRESHOLD", "0.7")]).unwrap_err();
    assert!(matches!(err, ConfigError::Conflict { .. }));
    assert_eq!(err.variable(), Some("MEMORY_CRITICAL_THRESHOLD"));
}

#[test]
fn intervals_are_positive_bounded_milliseconds() {
    for (var, max) in [
        ("MEMORY_CHECK_INTERVAL", 3_600_000u64),
        ("MEMORY_RECLAIM_INTERVAL", 86_400_000),
    ] {
        for bad in [
            "",
            "0",
            "-5",
            "5s",
            "1.5",
            "1e3",
            "thirty",
            &(max + 1).to_string(),
            "18446744073709551616",
        ] {
            invalid(var, bad);
        }
        let c = MemoryConfig::from_vars([(var, max.to_string())]).unwrap();
        let got = if var == "MEMORY_CHECK_INTERVAL" {
            c.check_interval
        } else {
            c.reclaim_interval
        };
        assert_eq!(got, Duration::from_millis(max));
    }
}

#[test]
fn sizes_are_plain_byte_counts() {
    // STREAM_* (tower-memory-stream-body's env.rs) and COMPRESSION_* (the umbrella's src/config.rs)
    // are tested where they are parsed now.
    for bad in ["", "-1", "10MB", "1.5", "0x10", "18446744073709551616"] {
        invalid("MEMORY_LIMIT_BYTES", bad);
    }
    invalid("MEMORY_LIMIT_BYTES", "0");
}

#[test]
fn allocator_profile_and_token() {
    let c = MemoryConfig::from_vars([("MEMORY_ALLOCATOR_PROFILE", "throughput")]).unwrap();
    assert_eq!(c.allocator_profile, Some(AllocatorProfile::Throughput));
    for bad in ["", "fast", "memory first"] {
        let err = invalid("MEMORY_ALLOCATOR_PROFILE", bad);
        assert!(err.to_string().contains("memory-first"), "{err}");
    }
    for bad in [
        "",
        "short",
        "has space inside 12345",
        " padded-token-123456 ",
    ] {
        let err = invalid("HEAP_PROFILE_TOKEN", bad);
        let text = err.to_string();
        // The value of a secret is never echoed back.
        assert!(text.contains("<redacted>"), "{text}");
        if !bad.trim().is_empty() {
            assert!(!text.contains(bad.trim()), "{text}");
        }
    }
}

#[test]
fn the_last_pair_wins_and_lookup_works() {
    let c = MemoryConfig::from_vars([
        ("MEMORY_CHECK_INTERVAL", "1000"),
        ("MEMORY_CHECK_INTERVAL", "2000"),
    ])
    .unwrap();
    assert_eq!(c.check_interval, Duration::from_secs(2));
    let c = MemoryConfig::from_lookup(|name| {
        (name == "MEMORY_ADMISSION_FLOOR").then(|| "2048".to_string())
    })
    .unwrap();
    assert_eq!(c.admission_floor, 2048);
}

#[test]
fn the_config_builds_a_matching_monitor() {
    let c = MemoryConfig::from_vars([
        ("MEMORY_WARNING_THRESHOLD", "0.6"),
        ("MEMORY_CRITICAL_THRESHOLD", "0.7"),
        ("MEMORY_CHECK_INTERVAL", "2500"),
        ("MEMORY_LIMIT_BYTES", "1000000"),
    ])
    .unwrap();
    let m = c.monitor_builder().build().unwrap();
    assert_eq!(m.thresholds().warning(), 0.6);
    assert_eq!(m.thresholds().critical(), 0.7);
    assert_eq!(m.interval(), Duration::from_millis(2500));
    assert_eq!(m.configured_limit(), Some(1_000_000));
}

/// `from_env` reads the real environment. Run in a child process so that setting variables
/// cannot race other tests of this binary.
#[test]
fn from_env_reads_the_process_environment() {
    if std::env::var_os("MEMORY_HEALTH_CONFIG_CHILD").is_some() {
        match MemoryConfig::from_env() {
            Ok(c) => println!("OK interval={}", c.check_interval.as_millis()),
            Err(e) => println!("ERR {e}"),
        }
        return;
    }
    let run = |value: &std::ffi::OsStr| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "from_env_reads_the_process_environment",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MEMORY_HEALTH_CONFIG_CHILD", "1")
            .env("MEMORY_CHECK_INTERVAL", value)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    use std::os::unix::ffi::OsStrExt;
    let os = |b: &'static [u8]| std::ffi::OsStr::from_bytes(b);
    assert!(run(os(b"1234")).contains("OK interval=1234"));
    let bad = run(os(b"12s"));
    assert!(
        bad.contains("ERR MEMORY_CHECK_INTERVAL=\"12s\" is invalid"),
        "{bad}"
    );
    let not_utf8 = run(os(b"12\xff"));
    assert!(
        not_utf8.contains("ERR MEMORY_CHECK_INTERVAL=") && not_utf8.contains("valid UTF-8"),
        "{not_utf8}"
    );
}
