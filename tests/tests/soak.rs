//! A short soak in CI: load and faults for 15 s, then nothing may be lost. Longer runs:
//! `cargo run --release -p iot-benches --bin soak -- --devices 50 --seconds 120`.

use iot_benches::soak::{SoakConfig, run};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_under_faults() {
    let report = run(SoakConfig {
        devices: 8,
        duration: Duration::from_secs(15),
        fault_every: Duration::from_secs(2),
        callers: 4,
    })
    .await
    .expect("soak set-up");
    println!("{report:#?}");
    assert!(report.faults_fired >= 5, "{report:#?}");
    assert!(
        report.calls_answered > 100 && report.patches_confirmed > 100,
        "{report:#?}"
    );
    assert_eq!(report.lost(), 0, "{report:#?}");
}
