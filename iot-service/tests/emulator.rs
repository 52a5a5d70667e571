//! The service client against the in-process emulator, with real devices over TLS.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::{DeviceClient, DeviceClientOptions, MethodError};
use iot_hub_emulator::{Emulator, RunningEmulator};
use iot_service::{
    Device, DeviceStatus, DirectMethodRequest, ErrorCode, ErrorKind, IfMatch, JobSchedule,
    JobStatus, Module, ServiceClient, ServiceClientOptions, TwinPatch,
};
use serde_json::{Value, json};
use std::time::Duration;

async fn hub() -> RunningEmulator {
    Emulator::builder().start().await.unwrap()
}

fn service(hub: &RunningEmulator) -> ServiceClient {
    service_for(hub, &hub.service_connection_string())
}

fn service_for(hub: &RunningEmulator, cs: &str) -> ServiceClient {
    let options = ServiceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap();
    ServiceClient::from_connection_string(cs, options).unwrap()
}

async fn device(hub: &RunningEmulator, id: &str) -> DeviceClient {
    let cs = hub.hub().create_device(id).unwrap();
    let options = DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap();
    DeviceClient::from_connection_string(&cs, options)
        .await
        .unwrap()
}

fn method(name: &str) -> DirectMethodRequest {
    DirectMethodRequest::new(name).response_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn invoke_method_with_typed_payloads() {
    let hub = hub().await;
    let dev = device(&hub, "d1").await;
    dev.on_method("echo", |v: Value| async move {
        Ok::<_, MethodError>(json!({ "got": v }))
    })
    .await
    .unwrap();
    let svc = service(&hub);
    let r = svc
        .invoke_method("d1", &method("echo").payload(&json!({"x": 1})).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    #[derive(serde::Deserialize)]
    struct Got {
        got: Value,
    }
    assert_eq!(r.json::<Got>().unwrap().got, json!({"x": 1}));
}

#[tokio::test]
async fn offline_unknown_and_slow_devices() {
    let hub = hub().await;
    let svc = service(&hub);
    hub.hub().create_device("offline").unwrap();
    let e = svc
        .invoke_method("offline", &method("x"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.status(), e.error_code()),
        (
            ErrorKind::DeviceNotOnline,
            Some(404),
            Some(ErrorCode::DeviceNotOnline)
        )
    );
    assert_eq!(e.numeric_code(), Some(404103));
    assert!(!e.is_retryable());
    assert!(e.request_id().is_some());
    let e = svc.invoke_method("nobody", &method("x")).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.error_code()),
        (ErrorKind::NotFound, Some(ErrorCode::DeviceNotFound))
    );

    let dev = device(&hub, "slow").await;
    dev.on_method("slow", |_: Value| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, MethodError>(Value::Null)
    })
    .await
    .unwrap();
    let req = DirectMethodRequest::new("slow").response_timeout(Duration::from_secs(5));
    let e = svc.invoke_method("slow", &req).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.error_code()),
        (ErrorKind::Timeout, Some(ErrorCode::GatewayTimeout))
    );
    assert!(e.is_retryable());
}

#[tokio::test]
async fn method_timeouts_outside_the_hub_range_are_refused_before_sending() {
    let hub = hub().await;
    let svc = service(&hub);
    for req in [
        DirectMethodRequest::new("x").response_timeout(Duration::from_secs(4)),
        DirectMethodRequest::new("x").response_timeout(Duration::from_secs(301)),
        DirectMethodRequest::new("x").connect_timeout(Duration::from_secs(301)),
        DirectMethodRequest::new("bad/name"),
    ] {
        let e = svc.invoke_method("nobody", &req).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert_eq!(e.status(), None);
    }
}

#[tokio::test]
async fn twins_with_etags_and_desired_push() {
    let hub = hub().await;
    let dev = device(&hub, "t1").await;
    let mut desired = dev.desired_updates().await.unwrap();
    let svc = service(&hub);
    let twin = svc.get_twin("t1").await.unwrap();
    let etag = twin.etag.clone().unwrap();
    let patch = TwinPatch::new()
        .tag("floor", json!(3))
        .desired("interval", json!(30));
    let updated = svc
        .update_twin("t1", &patch, IfMatch::Etag(etag.clone()))
        .await
        .unwrap();
    assert_eq!(updated.tags["floor"], 3);
    assert_eq!(updated.properties.desired.version, Some(2));
    // The stream starts with the desired state as it was when it opened (a Full), then the
    // patch; either way the update with `interval` must arrive.
    let u = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let u = desired.next().await.unwrap();
            if u.properties.contains_key("interval") {
                return u;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(u.properties["interval"], 30);
    let e = svc
        .update_twin("t1", &patch, IfMatch::Etag(etag))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.status()),
        (ErrorKind::PreconditionFailed, Some(412))
    );
    let replaced = svc
        .replace_twin(
            "t1",
            &TwinPatch::new().desired("mode", json!("eco")),
            IfMatch::Any,
        )
        .await
        .unwrap();
    assert!(replaced.tags.is_empty());
    assert_eq!(
        Value::Object(replaced.properties.desired.properties.clone()),
        json!({"mode": "eco"})
    );
    let e = svc
        .update_twin(
            "t1",
            &TwinPatch::new().tag("bad.key", json!(1)),
            IfMatch::Any,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    dev.update_reported(&json!({"rebootTime": "now"}))
        .await
        .unwrap();
    let twin = svc.get_twin("t1").await.unwrap();
    assert_eq!(twin.properties.reported.properties["rebootTime"], "now");
    assert!(
        twin.properties
            .reported
            .metadata
            .unwrap()
            .contains_key("rebootTime")
    );
}

#[tokio::test]
async fn module_twins_and_methods() {
    let hub = hub().await;
    let svc = service(&hub);
    svc.create_device(&Device::new("edge", None)).await.unwrap();
    let m = svc
        .create_module(&Module::new("edge", "filter", None))
        .await
        .unwrap();
    assert!(
        m.authentication
            .symmetric_key
            .unwrap()
            .primary_key
            .is_some()
    );
    let cs = hub.module_connection_string("edge", "filter").unwrap();
    let dev = DeviceClient::from_connection_string(
        &cs,
        DeviceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap(),
    )
    .await
    .unwrap();
    dev.on_method("ping", |_: Value| async {
        Ok::<_, MethodError>(json!("pong"))
    })
    .await
    .unwrap();
    let r = svc
        .invoke_module_method("edge", "filter", &method("ping"))
        .await
        .unwrap();
    assert_eq!(r.payload, json!("pong"));
    let t = svc
        .update_module_twin(
            "edge",
            "filter",
            &TwinPatch::new().desired("k", json!(1)),
            IfMatch::Any,
        )
        .await
        .unwrap();
    assert_eq!(t.module_id.as_deref(), Some("filter"));
    assert_eq!(
        svc.get_module_twin("edge", "filter")
            .await
            .unwrap()
            .properties
            .desired
            .properties["k"],
        1
    );
    assert_eq!(svc.list_modules("edge").await.unwrap().len(), 1);
}

#[tokio::test]
async fn registry_crud_and_statistics() {
    let hub = hub().await;
    let svc = service(&hub);
    let created = svc.create_device(&Device::new("r1", None)).await.unwrap();
    let keys = created.authentication.symmetric_key.clone().unwrap();
    assert_eq!(keys.primary_key.unwrap().expose().len(), 44);
    let e = svc
        .create_device(&Device::new("r1", None))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.error_code()),
        (ErrorKind::Conflict, Some(ErrorCode::DeviceAlreadyExists))
    );
    let mut d = svc.get_device("r1").await.unwrap();
    d.status = DeviceStatus::Disabled;
    let etag = d.etag.clone().unwrap();
    let updated = svc
        .update_device(&d, IfMatch::Etag(etag.clone()))
        .await
        .unwrap();
    assert_eq!(updated.status, DeviceStatus::Disabled);
    assert_eq!(
        svc.update_device(&d, IfMatch::Etag(etag))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::PreconditionFailed
    );
    let stats = svc.device_statistics().await.unwrap();
    assert_eq!(
        (stats.total_device_count, stats.disabled_device_count),
        (2, 1)
    );
    assert!(
        svc.list_devices(10)
            .await
            .unwrap()
            .iter()
            .any(|d| d.device_id == "r1")
    );
    svc.delete_device("r1", IfMatch::Any).await.unwrap();
    assert_eq!(
        svc.get_device("r1").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        svc.delete_device("r1", IfMatch::Any)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn a_key_with_too_few_rights_is_refused() {
    let hub = hub().await;
    let _dev = device(&hub, "rights").await;
    let read_only = service_for(&hub, &hub.policy_connection_string("registryRead").unwrap());
    assert!(read_only.get_device("rights").await.is_ok());
    let e = read_only
        .invoke_method("rights", &method("x"))
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::Unauthorized, Some(401)));
    let e = read_only
        .create_device(&Device::new("nope", None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    let svc_only = service_for(&hub, &hub.policy_connection_string("service").unwrap());
    assert!(svc_only.get_twin("rights").await.is_ok());
    assert_eq!(
        svc_only.get_device("rights").await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
}

#[tokio::test]
async fn query_paging_edge_cases() {
    let hub = hub().await;
    let svc = service(&hub);
    for i in 0..25 {
        svc.create_device(&Device::new(format!("q{i:02}"), None))
            .await
            .unwrap();
        svc.update_twin(
            &format!("q{i:02}"),
            &TwinPatch::new().tag("n", json!(i)),
            IfMatch::Any,
        )
        .await
        .unwrap();
    }
    let sql = "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'q')";
    for (page, pages) in [(10, 3), (25, 1), (100, 1), (1, 25)] {
        let mut q = svc.query(sql).page_size(page);
        let mut seen = 0;
        let mut n = 0;
        while let Some(p) = q.next_page().await.unwrap() {
            n += 1;
            seen += p.len();
        }
        assert_eq!((n, seen), (pages, 25), "page size {page}");
        assert_eq!(q.item_type(), Some("twin"));
    }
    // The same query as a futures Stream, across pages.
    use futures_util::StreamExt as _;
    let mut streamed: Vec<String> = svc
        .query(sql)
        .page_size(7)
        .map(|t| t.unwrap().device_id)
        .collect()
        .await;
    streamed.sort();
    let expected: Vec<String> = (0..25).map(|i| format!("q{i:02}")).collect();
    assert_eq!(streamed, expected, "every twin once");
    let mut mixed = svc.query(sql).page_size(10);
    let first_page = mixed.next_page().await.unwrap().unwrap();
    let rest: Vec<_> = (&mut mixed).collect().await;
    assert_eq!(
        (first_page.len(), rest.len()),
        (10, 15),
        "the stream carries on after the page API"
    );
    let empty = svc
        .query("SELECT * FROM devices WHERE tags.n = 999")
        .collect_all()
        .await
        .unwrap();
    assert!(empty.is_empty());
    let rows = svc
        .query_raw("SELECT deviceId, tags.n AS n FROM devices WHERE tags.n >= 23")
        .collect_all()
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            json!({"deviceId": "q23", "n": 23}),
            json!({"deviceId": "q24", "n": 24})
        ]
    );
    let count = svc
        .query_raw("SELECT COUNT() AS c FROM devices")
        .collect_all()
        .await
        .unwrap();
    assert_eq!(count, vec![json!({"c": 26})]);
    let e = svc
        .query("SELECT * FROM devices WHERE")
        .collect_all()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("position 27"), "{e}");
}

#[tokio::test]
async fn jobs_run_methods_and_twin_updates() {
    let hub = hub().await;
    let svc = service(&hub);
    let a = device(&hub, "ja").await;
    let b = device(&hub, "jb").await;
    for d in [&a, &b] {
        d.on_method("reboot", |_: Value| async {
            Ok::<_, MethodError>(json!("ok"))
        })
        .await
        .unwrap();
    }
    let job = svc
        .schedule_method_job(
            "job1",
            "deviceId IN ['ja','jb']",
            &method("reboot"),
            JobSchedule::default(),
        )
        .await
        .unwrap();
    assert_eq!(job.job_id, "job1");
    let done = wait_job(&svc, "job1").await;
    assert_eq!(done.status, JobStatus::Completed);
    let s = done.device_job_statistics;
    assert_eq!(
        (s.device_count, s.succeeded_count, s.failed_count),
        (2, 2, 0)
    );
    let rows = svc
        .query_raw("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'job1'")
        .collect_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["outcome"]["deviceMethodResponse"]["status"], 200);

    svc.schedule_twin_update_job(
        "job2",
        "deviceId = 'jb'",
        &TwinPatch::new().desired("fw", json!("2.0")),
        JobSchedule::default(),
    )
    .await
    .unwrap();
    assert_eq!(wait_job(&svc, "job2").await.status, JobStatus::Completed);
    assert_eq!(
        svc.get_twin("jb")
            .await
            .unwrap()
            .properties
            .desired
            .properties["fw"],
        "2.0"
    );
    assert_eq!(
        svc.schedule_method_job(
            "job2",
            "deviceId = 'jb'",
            &method("reboot"),
            JobSchedule::default()
        )
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::Conflict
    );

    let later = JobSchedule {
        start: Some(std::time::SystemTime::now() + Duration::from_secs(3600)),
        ..Default::default()
    };
    svc.schedule_method_job("job3", "deviceId = 'ja'", &method("reboot"), later)
        .await
        .unwrap();
    assert_eq!(
        svc.get_job("job3").await.unwrap().status,
        JobStatus::Scheduled
    );
    assert_eq!(
        svc.cancel_job("job3").await.unwrap().status,
        JobStatus::Cancelled
    );
    let completed = svc
        .query_jobs(None, Some("completed"))
        .collect_all()
        .await
        .unwrap();
    assert_eq!(completed.len(), 2);
    assert_eq!(
        svc.get_job("nope").await.unwrap_err().error_code(),
        Some(ErrorCode::JobNotFound)
    );
}

async fn wait_job(svc: &ServiceClient, id: &str) -> iot_service::JobResponse {
    for _ in 0..200 {
        let j = svc.get_job(id).await.unwrap();
        if !matches!(
            j.status,
            JobStatus::Scheduled | JobStatus::Running | JobStatus::Queued | JobStatus::Enqueued
        ) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

#[tokio::test]
async fn secrets_never_appear_in_debug_or_errors() {
    let hub = hub().await;
    let cs = hub.service_connection_string();
    let key = cs.split("SharedAccessKey=").nth(1).unwrap().to_owned();
    let svc = service(&hub);
    let e = svc.get_twin("nobody").await.unwrap_err();
    let wrong = cs.replace(&key, "d3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZ3dyb25nMDA=");
    let unauthorized = service_for(&hub, &wrong)
        .get_twin("nobody")
        .await
        .unwrap_err();
    assert_eq!(unauthorized.kind(), ErrorKind::Unauthorized);
    let bad = ServiceClient::from_connection_string(
        "HostName=h;SharedAccessKey=c2VjcmV0a2V5",
        ServiceClientOptions::new(),
    )
    .unwrap_err();
    assert!(bad.to_string().contains("SharedAccessKeyName"), "{bad}");
    for out in [
        format!("{svc:?}"),
        format!("{e:?} {e}"),
        format!("{unauthorized:?} {unauthorized}"),
        format!("{bad:?} {bad}"),
        format!("{:?}", ServiceClientOptions::new()),
    ] {
        assert!(
            !out.contains(&key) && !out.contains("d3Jvbmd3") && !out.contains("c2VjcmV0a2V5"),
            "{out}"
        );
        assert!(!out.contains("SharedAccessSignature"), "{out}");
    }
}
