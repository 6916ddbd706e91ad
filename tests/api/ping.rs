//! Endpoint verification: a new endpoint, or one whose URL changes, must
//! answer a signed ping with 2xx unless the request skips it.

use std::time::Duration;

use hookd::grpc::pb;
use prost_types::FieldMask;
use tonic::Code;

use crate::backend_test;
use crate::helpers::{Backend, TestApp, TestDb, spawn_app_with, test_delivery_config};
use crate::receiver::{Behavior, TestReceiver};

const WAIT: Duration = Duration::from_secs(10);

async fn pinging_app(backend: Backend) -> TestApp {
    spawn_app_with(TestDb::new(&backend), test_delivery_config(), true).await
}

async fn create(app: &TestApp, url: String, skip: bool) -> Result<pb::Endpoint, tonic::Status> {
    app.endpoints()
        .await
        .create_endpoint(pb::CreateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                name: "pinged".into(),
                url,
                secret: "ping-secret-1".into(),
                ..Default::default()
            }),
            skip_ping_validation: skip,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn endpoint_count(app: &TestApp) -> usize {
    app.endpoints()
        .await
        .list_endpoints(pb::ListEndpointsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .endpoints
        .len()
}

async fn a_new_endpoint_must_answer_the_ping(backend: Backend) {
    let app = pinging_app(backend).await;
    let receiver = TestReceiver::start().await;
    let created = create(&app, receiver.url("/hook"), false)
        .await
        .expect("answered 200");
    let ping = receiver.next_request(WAIT).await;
    assert_eq!(ping.header("x-hookd-event-type"), Some("hookd.ping"));
    assert!(
        ping.header("x-convoy-signature")
            .is_some_and(|s| s.contains("v1=")),
        "signed"
    );
    assert_eq!(created.status, pb::EndpointStatus::Active as i32);

    receiver.respond_with(Behavior::Status(500));
    let refused = create(&app, receiver.url("/failing"), false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("HTTP 500"),
        "{}",
        refused.message()
    );

    let nobody = TestReceiver::start_refusing();
    let refused = create(&app, format!("http://{nobody}/hook"), false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("connection_refused"),
        "{}",
        refused.message()
    );
    assert_eq!(
        endpoint_count(&app).await,
        1,
        "refused endpoints are not stored"
    );

    create(&app, format!("http://{nobody}/hook"), true)
        .await
        .expect("skipping the ping");
    assert_eq!(endpoint_count(&app).await, 2);
}

async fn a_new_url_is_pinged_too(backend: Backend) {
    let app = pinging_app(backend).await;
    let receiver = TestReceiver::start().await;
    let endpoint = create(&app, receiver.url("/hook"), false).await.unwrap();
    receiver.next_request(WAIT).await;
    let update = |url: String, skip: bool| pb::UpdateEndpointRequest {
        endpoint: Some(pb::Endpoint {
            id: endpoint.id.clone(),
            url,
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["url".into()],
        }),
        skip_ping_validation: skip,
    };
    let nobody = TestReceiver::start_refusing();
    let refused = app
        .endpoints()
        .await
        .update_endpoint(update(format!("http://{nobody}/moved"), false))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let unchanged = app
        .endpoints()
        .await
        .get_endpoint(pb::GetEndpointRequest {
            id: endpoint.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged.url, endpoint.url);

    // A change that keeps the URL sends no ping.
    app.endpoints()
        .await
        .update_endpoint(pb::UpdateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                id: endpoint.id.clone(),
                name: "renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
            skip_ping_validation: false,
        })
        .await
        .unwrap();
    receiver.expect_no_request(Duration::from_millis(200)).await;

    app.endpoints()
        .await
        .update_endpoint(update(receiver.url("/moved"), false))
        .await
        .expect("the new URL answers");
    assert_eq!(receiver.next_request(WAIT).await.path, "/moved");
}

backend_test!(
    a_new_endpoint_must_answer_the_ping,
    a_new_endpoint_must_answer_the_ping
);
backend_test!(a_new_url_is_pinged_too, a_new_url_is_pinged_too);
