//! ListEndpoints pages: stable order, no gaps or repeats, filters.

use std::collections::HashSet;

use hookd::grpc::pb;
use prost_types::FieldMask;

use crate::db_test;
use crate::helpers::{EndpointClient, assert_invalid_field, endpoint};

async fn create_many(client: &mut EndpointClient, n: usize, owner: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let mut ep = endpoint(&format!("ep-{i}"));
        ep.owner_id = owner.to_owned();
        let created = client
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(ep),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(created.id);
    }
    ids
}

async fn list_all(
    client: &mut EndpointClient,
    request: pb::ListEndpointsRequest,
    mut between_pages: impl AsyncFnMut(&mut EndpointClient),
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_endpoints(pb::ListEndpointsRequest {
                page_token: token.clone(),
                ..request.clone()
            })
            .await
            .unwrap()
            .into_inner();
        let limit = if request.page_size == 0 {
            50
        } else {
            request.page_size as usize
        };
        assert!(page.endpoints.len() <= limit);
        seen.extend(page.endpoints.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
        between_pages(client).await;
    }
}

db_test!(
    pages_through_250_endpoints_without_gaps_or_repeats_while_more_are_created,
    |app| async move {
        let mut client = app.endpoints().await;
        let originals = create_many(&mut client, 250, "").await;

        let mut created_meanwhile = Vec::new();
        let seen = list_all(
            &mut client,
            pb::ListEndpointsRequest {
                page_size: 40,
                ..Default::default()
            },
            async |c: &mut EndpointClient| created_meanwhile.extend(create_many(c, 3, "").await),
        )
        .await;

        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no endpoint is listed twice");
        assert_eq!(
            &seen[..250],
            &originals[..],
            "every original, in creation order"
        );
        // Endpoints created during the walk sort after the cursor, so they show
        // up at the end rather than shifting pages.
        assert_eq!(&seen[250..], &created_meanwhile[..seen.len() - 250]);
    }
);

db_test!(
    default_page_size_is_50_and_the_last_page_has_no_token,
    |app| async move {
        let mut client = app.endpoints().await;
        create_many(&mut client, 51, "").await;
        let first = client
            .list_endpoints(pb::ListEndpointsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.endpoints.len(), 50);
        assert!(!first.next_page_token.is_empty());
        let second = client
            .list_endpoints(pb::ListEndpointsRequest {
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.endpoints.len(), 1);
        assert_eq!(second.next_page_token, "");
    }
);

db_test!(
    filters_by_owner_and_status_and_tokens_stick_to_their_filters,
    |app| async move {
        let mut client = app.endpoints().await;
        let alice = create_many(&mut client, 5, "alice").await;
        let bob = create_many(&mut client, 3, "bob").await;
        client
            .update_endpoint(pb::UpdateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    id: alice[1].clone(),
                    status: pb::EndpointStatus::Paused as i32,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["status".into()],
                }),
                ..Default::default()
            })
            .await
            .unwrap();

        let by_owner = list_all(
            &mut client,
            pb::ListEndpointsRequest {
                page_size: 2,
                owner_id: "alice".into(),
                ..Default::default()
            },
            async |_: &mut EndpointClient| {},
        )
        .await;
        assert_eq!(by_owner, alice);

        let paused = list_all(
            &mut client,
            pb::ListEndpointsRequest {
                status: pb::EndpointStatus::Paused as i32,
                ..Default::default()
            },
            async |_: &mut EndpointClient| {},
        )
        .await;
        assert_eq!(paused, vec![alice[1].clone()]);

        let active_bob = list_all(
            &mut client,
            pb::ListEndpointsRequest {
                owner_id: "bob".into(),
                status: pb::EndpointStatus::Active as i32,
                ..Default::default()
            },
            async |_: &mut EndpointClient| {},
        )
        .await;
        assert_eq!(active_bob, bob);

        let first = client
            .list_endpoints(pb::ListEndpointsRequest {
                page_size: 2,
                owner_id: "alice".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let status = client
            .list_endpoints(pb::ListEndpointsRequest {
                page_size: 2,
                owner_id: "bob".into(),
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid_field(&status, "page_token");
    }
);
