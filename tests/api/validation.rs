//! Every kind of bad input answers INVALID_ARGUMENT naming the field, and a
//! refused call stores nothing.

use hookd::grpc::pb;
use prost_types::FieldMask;

use crate::db_test;
use crate::helpers::{assert_invalid_field, endpoint};

/// (what is wrong, the request field it must name, the endpoint to send)
fn bad_endpoints() -> Vec<(&'static str, &'static str, pb::Endpoint)> {
    let with = |f: fn(&mut pb::Endpoint)| {
        let mut ep = endpoint("valid");
        f(&mut ep);
        ep
    };
    let header = |name: &str| {
        let mut ep = endpoint("valid");
        ep.headers.insert(name.to_owned(), "x".to_owned());
        ep
    };
    vec![
        (
            "empty name",
            "endpoint.name",
            with(|e| e.name = "  ".into()),
        ),
        ("no url", "endpoint.url", with(|e| e.url = String::new())),
        (
            "not a url",
            "endpoint.url",
            with(|e| e.url = "hooks.example.com/x".into()),
        ),
        (
            "ftp scheme",
            "endpoint.url",
            with(|e| e.url = "ftp://example.com/x".into()),
        ),
        (
            "no host",
            "endpoint.url",
            with(|e| e.url = "http:///path".into()),
        ),
        (
            "credentials",
            "endpoint.url",
            with(|e| e.url = "https://u:p@example.com/".into()),
        ),
        (
            "timeout too long",
            "endpoint.timeout_seconds",
            with(|e| e.timeout_seconds = 301),
        ),
        ("Host header", "endpoint.headers", header("Host")),
        (
            "Content-Length header",
            "endpoint.headers",
            header("Content-Length"),
        ),
        (
            "Transfer-Encoding header",
            "endpoint.headers",
            header("transfer-encoding"),
        ),
        (
            "Connection header",
            "endpoint.headers",
            header("Connection"),
        ),
        (
            "signature header",
            "endpoint.headers",
            header("X-Convoy-Signature"),
        ),
        (
            "hookd header",
            "endpoint.headers",
            header("X-Hookd-Delivery-Id"),
        ),
        ("bad header name", "endpoint.headers", header("bad header")),
        (
            "unknown content type",
            "endpoint.content_type",
            with(|e| e.content_type = "text/xml".into()),
        ),
        (
            "rate limit without period",
            "endpoint.rate_limit",
            with(|e| {
                e.rate_limit = Some(pb::RateLimit {
                    count: 5,
                    period_seconds: 0,
                })
            }),
        ),
        (
            "bad event type",
            "endpoint.event_types",
            with(|e| e.event_types = vec!["order paid".into()]),
        ),
        (
            "short secret",
            "endpoint.secret",
            with(|e| e.secret = "short".into()),
        ),
        (
            "owner too long",
            "endpoint.owner_id",
            with(|e| e.owner_id = "o".repeat(129)),
        ),
        (
            "description too long",
            "endpoint.description",
            with(|e| e.description = "d".repeat(1025)),
        ),
    ]
}

db_test!(
    create_refuses_each_bad_field_and_stores_nothing,
    |app| async move {
        let mut client = app.endpoints().await;
        for (what, field, bad) in bad_endpoints() {
            let status = client
                .create_endpoint(pb::CreateEndpointRequest {
                    endpoint: Some(bad),
                    ..Default::default()
                })
                .await
                .expect_err(what);
            assert_invalid_field(&status, field);
        }
        let missing = client
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: None,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid_field(&missing, "endpoint");

        let listed = client
            .list_endpoints(pb::ListEndpointsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(
            listed.endpoints.is_empty(),
            "nothing was stored: {:?}",
            listed.endpoints
        );
    }
);

db_test!(
    update_refuses_bad_fields_and_leaves_the_endpoint_as_it_was,
    |app| async move {
        let mut client = app.endpoints().await;
        let created = app.create_endpoint("keep").await;
        let before = client
            .get_endpoint(pb::GetEndpointRequest {
                id: created.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        // Without a mask an empty URL means "leave it", so that case is not bad here.
        for (what, field, mut bad) in bad_endpoints().into_iter().filter(|(w, ..)| *w != "no url") {
            bad.id = created.id.clone();
            let status = client
                .update_endpoint(pb::UpdateEndpointRequest {
                    endpoint: Some(bad),
                    update_mask: None,
                    ..Default::default()
                })
                .await
                .expect_err(what);
            assert_invalid_field(&status, field);
        }
        let mask = |paths: &[&str]| FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        };
        for (paths, field) in [
            (&["nmae"][..], "update_mask"),
            (&["id"][..], "update_mask"),
            (&["created_at"][..], "update_mask"),
            (&["name"][..], "endpoint.name"),
            (&["url"][..], "endpoint.url"),
            (&["status"][..], "endpoint.status"),
        ] {
            let status = client
                .update_endpoint(pb::UpdateEndpointRequest {
                    endpoint: Some(pb::Endpoint {
                        id: created.id.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(mask(paths)),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_invalid_field(&status, field);
        }
        for (id, field) in [("", "endpoint.id"), ("ep_nope", "endpoint.id")] {
            let status = client
                .update_endpoint(pb::UpdateEndpointRequest {
                    endpoint: Some(pb::Endpoint {
                        id: id.into(),
                        name: "x".into(),
                        ..Default::default()
                    }),
                    update_mask: None,
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_invalid_field(&status, field);
        }
        let after = client
            .get_endpoint(pb::GetEndpointRequest {
                id: created.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(after, before, "refused updates change nothing");
    }
);

db_test!(
    malformed_ids_and_list_parameters_name_their_field,
    |app| async move {
        let mut client = app.endpoints().await;
        for id in ["", "nope", "proj_0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b"] {
            let status = client
                .get_endpoint(pb::GetEndpointRequest { id: id.into() })
                .await
                .unwrap_err();
            assert_invalid_field(&status, "id");
            let status = client
                .delete_endpoint(pb::DeleteEndpointRequest { id: id.into() })
                .await
                .unwrap_err();
            assert_invalid_field(&status, "id");
        }
        for page_size in [-1, 1001] {
            let status = client
                .list_endpoints(pb::ListEndpointsRequest {
                    page_size,
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_invalid_field(&status, "page_size");
        }
        // A real token whose cursor is swapped for something that is no id.
        let forged = {
            use base64::Engine;
            use base64::engine::general_purpose::URL_SAFE_NO_PAD;
            app.create_endpoint("a").await;
            app.create_endpoint("b").await;
            let real = client
                .list_endpoints(pb::ListEndpointsRequest {
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .next_page_token;
            let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&real).unwrap()).unwrap();
            let (head, _cursor) = text.rsplit_once('|').unwrap();
            URL_SAFE_NO_PAD.encode(format!("{head}|ep_\0' OR 1=1"))
        };
        for page_token in ["%%%", "bm90IGEgdG9rZW4", forged.as_str()] {
            let status = client
                .list_endpoints(pb::ListEndpointsRequest {
                    page_token: page_token.into(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_invalid_field(&status, "page_token");
        }
        let status = client
            .list_endpoints(pb::ListEndpointsRequest {
                status: 99,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid_field(&status, "status");
    }
);
