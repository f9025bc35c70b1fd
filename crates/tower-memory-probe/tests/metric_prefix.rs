//! The process-wide metric prefix, in a process of its own (it is fixed once per process).

use tower_memory_probe::{MetricName, MetricPrefixError, metric_prefix, set_metric_prefix};

static REQUESTS: MetricName = MetricName::new("http_requests_total");

#[test]
fn the_prefix_is_set_once_and_every_name_carries_it() {
    assert_eq!(
        set_metric_prefix("my-app"),
        Err(MetricPrefixError::Invalid("my-app".into()))
    );
    set_metric_prefix("myapp").unwrap();
    // The same prefix again is fine (two parts of a program may both set it).
    set_metric_prefix("myapp").unwrap();
    assert_eq!(metric_prefix(), Some("myapp"));
    assert_eq!(REQUESTS.base(), "http_requests_total");
    assert_eq!(REQUESTS.get(), "myapp_http_requests_total");
    assert_eq!(REQUESTS.to_string(), "myapp_http_requests_total");
    let refused = set_metric_prefix("other").unwrap_err();
    assert_eq!(
        refused,
        MetricPrefixError::AlreadyFixed {
            current: Some("myapp")
        }
    );
    assert!(refused.to_string().contains("fixed already"));
}
