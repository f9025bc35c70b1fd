//! How the monitor sizes the process-wide memory budget from each sample.

use tower_memory_probe::{AllocatorStats, MemoryBudget};

/// How the capacity of the governor's [`MemoryBudget`] follows the memory limit.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum BudgetCapacity {
    /// The warning threshold's share of the limit, minus the memory the process holds outside
    /// requests (usage, less what the allocator keeps freed for reuse, less what the budget has
    /// charged), re-evaluated at every sample. Never below a tenth of that share, so that a
    /// misjudged sample cannot starve the service.
    ///
    /// Why the warning threshold and not the critical one: a full budget is the governor doing
    /// its job, not danger. Filled to the critical threshold it would turn readiness to 503 and
    /// shed tiny requests at every busy moment; filled to the warning threshold it leaves the band
    /// up to critical (10% of the limit by default) for what the budget cannot see (allocator
    /// slack, memory outside requests growing between samples, polls in progress), and critical
    /// pressure keeps its meaning: something outside the governor's control.
    Auto,
    /// A fixed number of bytes (`MEMORY_REQUEST_BUDGET=268435456`).
    Bytes(u64),
    /// A fraction of the limit (`MEMORY_REQUEST_BUDGET=0.6`), re-evaluated as the limit changes.
    RatioOfLimit(f64),
}

/// What the monitor needs to size the budget.
pub(crate) struct Inputs<'a> {
    pub(crate) limit: u64,
    /// The share of the limit requests and the rest of the process may fill together.
    pub(crate) share: f64,
    pub(crate) usage: u64,
    pub(crate) allocator: &'a AllocatorStats,
    pub(crate) charged: u64,
}

impl BudgetCapacity {
    /// The capacity for one sample.
    pub(crate) fn capacity(self, inputs: &Inputs<'_>) -> u64 {
        match self {
            BudgetCapacity::Bytes(bytes) => bytes,
            BudgetCapacity::RatioOfLimit(ratio) => (inputs.limit as f64 * ratio) as u64,
            BudgetCapacity::Auto => {
                let share = (inputs.limit as f64 * inputs.share) as u64;
                let outside = outside_requests(inputs);
                share.saturating_sub(outside).max(share / 10)
            }
        }
    }
}

/// Memory the process holds that the budget does not account for: usage, less the pages the
/// allocator keeps freed (dirty and muzzy: reused by the next allocations without growing the
/// resident set), less what requests have charged.
pub(crate) fn outside_requests(inputs: &Inputs<'_>) -> u64 {
    let a = inputs.allocator;
    let reusable = match (a.resident_bytes, a.active_bytes, a.metadata_bytes) {
        (Some(resident), Some(active), metadata) => {
            resident.saturating_sub(active + metadata.unwrap_or(0))
        }
        _ => 0,
    };
    inputs
        .usage
        .saturating_sub(reusable)
        .saturating_sub(inputs.charged)
}

/// Sets the budget's capacity and movement marks after a sample: the monitor samples again as
/// soon as what requests hold moves by `step` bytes either way.
pub(crate) fn apply(budget: &MemoryBudget, capacity: u64, step: u64) {
    budget.set_capacity(capacity);
    let used = budget.in_use();
    budget.set_marks(used.saturating_sub(step), used.saturating_add(step));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(resident: u64, active: u64) -> AllocatorStats {
        AllocatorStats {
            resident_bytes: Some(resident),
            active_bytes: Some(active),
            metadata_bytes: Some(0),
            ..AllocatorStats::default()
        }
    }

    #[test]
    fn auto_takes_out_what_requests_do_not_hold() {
        let allocator = stats(100 << 20, 100 << 20);
        let inputs = Inputs {
            limit: 1000 << 20,
            share: 0.85,
            usage: 120 << 20,
            allocator: &allocator,
            charged: 60 << 20,
        };
        // 850 MiB share, 60 MiB outside requests.
        assert_eq!(BudgetCapacity::Auto.capacity(&inputs), 790 << 20);
        // Freed pages the allocator keeps for reuse are not "outside".
        let dirty = stats(100 << 20, 40 << 20);
        let inputs = Inputs {
            allocator: &dirty,
            charged: 0,
            ..inputs
        };
        assert_eq!(BudgetCapacity::Auto.capacity(&inputs), 790 << 20);
        // A process that holds nearly everything outside requests keeps a tenth of its share.
        let none = AllocatorStats::default();
        let inputs = Inputs {
            usage: 2000 << 20,
            allocator: &none,
            ..inputs
        };
        assert_eq!(BudgetCapacity::Auto.capacity(&inputs), 85 << 20);
        assert_eq!(BudgetCapacity::Bytes(5).capacity(&inputs), 5);
        assert_eq!(
            BudgetCapacity::RatioOfLimit(0.5).capacity(&inputs),
            500 << 20
        );
    }
}
