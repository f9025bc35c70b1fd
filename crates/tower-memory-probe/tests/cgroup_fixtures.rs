//! cgroup readers on fixture trees: v1, v2, hybrid, unlimited, nested limits, missing files.

use std::path::Path;

use test_support::fixtures::write;
use tower_memory_probe::{CgroupVersion, cgroup_memory_at};

const V2_MOUNT: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

/// A pure v2 host: the pod slice limits at 512 MiB, the container at 1 GiB, memory.high unset.
fn v2_tree(root: &Path) {
    write(root, "proc/self/cgroup", "0::/kubepods.slice/pod1/ctr\n");
    write(root, "proc/self/mountinfo", V2_MOUNT);
    let base = "sys/fs/cgroup/kubepods.slice";
    write(root, &format!("{base}/memory.max"), "max\n");
    write(root, &format!("{base}/pod1/memory.max"), "536870912\n");
    write(root, &format!("{base}/pod1/memory.high"), "max\n");
    write(
        root,
        &format!("{base}/pod1/ctr/memory.current"),
        "314572800\n",
    );
    write(root, &format!("{base}/pod1/ctr/memory.max"), "1073741824\n");
    write(root, &format!("{base}/pod1/ctr/memory.high"), "max\n");
    write(
        root,
        &format!("{base}/pod1/ctr/memory.stat"),
        "anon 200000000\nfile 100000000\nactive_file 4572800\ninactive_file 104857600\n",
    );
    write(
        root,
        &format!("{base}/pod1/ctr/memory.events"),
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\n",
    );
}

#[test]
fn v2_nested_limits_take_the_smallest_up_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    v2_tree(dir.path());
    let m = cgroup_memory_at(dir.path()).unwrap().expect("a v2 cgroup");
    assert_eq!(m.version, CgroupVersion::V2);
    assert!(m.path.ends_with("kubepods.slice/pod1/ctr"));
    assert_eq!(m.usage_bytes, 314_572_800);
    assert_eq!(
        m.limit_bytes,
        Some(536_870_912),
        "the parent's 512 MiB binds"
    );
    assert_eq!(m.high_bytes, None, "literal max is no limit");
    assert_eq!(m.inactive_file_bytes, Some(104_857_600));
    assert_eq!(m.working_set_bytes, 314_572_800 - 104_857_600);
    assert_eq!(m.oom_kills, Some(2));
    assert_eq!(m.effective_limit_bytes(), Some(536_870_912));
}

#[test]
fn v2_memory_high_is_the_effective_limit_when_lower() {
    let dir = tempfile::tempdir().unwrap();
    v2_tree(dir.path());
    write(
        dir.path(),
        "sys/fs/cgroup/kubepods.slice/pod1/ctr/memory.high",
        "402653184\n",
    );
    let m = cgroup_memory_at(dir.path()).unwrap().unwrap();
    assert_eq!(m.high_bytes, Some(402_653_184));
    assert_eq!(m.limit_bytes, Some(536_870_912));
    assert_eq!(m.effective_limit_bytes(), Some(402_653_184));
}

#[test]
fn v2_unlimited_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "proc/self/cgroup", "0::/user.slice\n");
    write(root, "proc/self/mountinfo", V2_MOUNT);
    write(root, "sys/fs/cgroup/user.slice/memory.current", "1000\n");
    write(root, "sys/fs/cgroup/user.slice/memory.max", "max\n");
    let m = cgroup_memory_at(root).unwrap().unwrap();
    assert_eq!(m.limit_bytes, None);
    assert_eq!(m.effective_limit_bytes(), None);
    // memory.stat and memory.events missing: unknown, not zero.
    assert_eq!(m.inactive_file_bytes, None);
    assert_eq!(m.oom_kills, None);
    assert_eq!(m.working_set_bytes, 1000);
}

#[test]
fn v2_namespaced_container_sees_its_cgroup_at_the_mount_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // With a cgroup namespace, /proc/self/cgroup says "/" and the mount shows the container's own
    // cgroup; the parent's limit is invisible, which is what the container can know.
    write(root, "proc/self/cgroup", "0::/\n");
    write(root, "proc/self/mountinfo", V2_MOUNT);
    write(root, "sys/fs/cgroup/memory.current", "5000\n");
    write(root, "sys/fs/cgroup/memory.max", "268435456\n");
    let m = cgroup_memory_at(root).unwrap().unwrap();
    assert_eq!(m.limit_bytes, Some(268_435_456));
    assert_eq!(m.usage_bytes, 5000);
}

const V1_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// The shape of this very machine: cgroup v1 memory controller plus an empty unified mount.
fn hybrid_tree(root: &Path, limit: &str, hierarchical: &str) {
    write(
        root,
        "proc/self/cgroup",
        "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n",
    );
    write(root, "proc/self/mountinfo", V1_MOUNTS);
    write(root, "sys/fs/cgroup/unified/cgroup.procs", "1\n");
    let base = "sys/fs/cgroup/memory/process_api/abc";
    write(root, &format!("{base}/memory.usage_in_bytes"), "96776192\n");
    write(root, &format!("{base}/memory.limit_in_bytes"), limit);
    write(
        root,
        &format!("{base}/memory.stat"),
        &format!(
            "cache 1000\nrss 2000\ninactive_file 900\nhierarchical_memory_limit {hierarchical}\ntotal_inactive_file 6776192\n"
        ),
    );
    write(
        root,
        &format!("{base}/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
}

#[test]
fn hybrid_host_reads_the_v1_memory_controller() {
    let dir = tempfile::tempdir().unwrap();
    hybrid_tree(dir.path(), "9223372036854771712\n", "9223372036854771712");
    let m = cgroup_memory_at(dir.path())
        .unwrap()
        .expect("v1 memory cgroup");
    assert_eq!(m.version, CgroupVersion::V1);
    assert!(m.path.ends_with("memory/process_api/abc"));
    assert_eq!(m.usage_bytes, 96_776_192);
    assert_eq!(m.limit_bytes, None, "the unlimited sentinel is no limit");
    assert_eq!(
        m.inactive_file_bytes,
        Some(6_776_192),
        "total_ wins over the local figure"
    );
    assert_eq!(m.working_set_bytes, 90_000_000);
    assert_eq!(m.oom_kills, Some(3));
}

#[test]
fn v1_hierarchical_limit_binds_below_the_own_limit() {
    let dir = tempfile::tempdir().unwrap();
    hybrid_tree(dir.path(), "2147483648\n", "1073741824");
    let m = cgroup_memory_at(dir.path()).unwrap().unwrap();
    assert_eq!(m.limit_bytes, Some(1_073_741_824));
    hybrid_tree(dir.path(), "536870912\n", "9223372036854771712");
    let m = cgroup_memory_at(dir.path()).unwrap().unwrap();
    assert_eq!(m.limit_bytes, Some(536_870_912));
}

#[test]
fn v1_container_with_mount_root_inside_the_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Docker without a cgroup namespace: the mount shows /docker/abc at /sys/fs/cgroup/memory.
    write(root, "proc/self/cgroup", "4:memory:/docker/abc\n");
    write(
        root,
        "proc/self/mountinfo",
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n",
    );
    write(root, "sys/fs/cgroup/memory/memory.usage_in_bytes", "4096\n");
    write(root, "sys/fs/cgroup/memory/memory.limit_in_bytes", "8192\n");
    let m = cgroup_memory_at(root).unwrap().unwrap();
    assert_eq!(m.version, CgroupVersion::V1);
    assert_eq!(m.limit_bytes, Some(8192));
    assert_eq!(
        m.working_set_bytes, 4096,
        "memory.stat missing: no inactive file to subtract"
    );
}

#[test]
fn missing_files_mean_no_cgroup_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert_eq!(cgroup_memory_at(root).unwrap(), None, "no /proc at all");
    write(root, "proc/self/cgroup", "0::/\n");
    write(root, "proc/self/mountinfo", V2_MOUNT);
    assert_eq!(
        cgroup_memory_at(root).unwrap(),
        None,
        "v2 mount without memory.current"
    );
    write(root, "proc/self/cgroup", "4:memory:/x\n");
    write(root, "proc/self/mountinfo", V1_MOUNTS);
    assert_eq!(
        cgroup_memory_at(root).unwrap(),
        None,
        "v1 mount without the cgroup dir files"
    );
}

#[test]
fn garbage_in_a_present_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    v2_tree(dir.path());
    write(
        dir.path(),
        "sys/fs/cgroup/kubepods.slice/pod1/ctr/memory.max",
        "lots\n",
    );
    let err = cgroup_memory_at(dir.path()).unwrap_err().to_string();
    assert!(err.contains("memory.max") && err.contains("lots"), "{err}");
}

#[test]
fn the_real_host_is_readable_whatever_its_version() {
    // This machine is a cgroup v1 hybrid; CI may be anything. Reading must not fail.
    if let Some(m) = tower_memory_probe::cgroup_memory().unwrap() {
        assert!(m.usage_bytes > 0);
        assert!(m.working_set_bytes <= m.usage_bytes);
    }
}
