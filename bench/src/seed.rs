//! Seeds a fresh control plane through its admin API with what the suite needs: one team, the mock as
//! provider, the model `bench-chat` routed to it, and one API key, whose plaintext is returned.

use std::net::SocketAddr;

use serde_json::json;

use crate::client::post_json;

/// The public model name every bench request asks for.
pub const MODEL: &str = "bench-chat";

#[derive(serde::Deserialize)]
struct Created {
    id: i64,
}

#[derive(serde::Deserialize)]
struct Issued {
    key: String,
}

pub async fn seed(cp: SocketAddr, operator_token: &str, mock_url: &str) -> anyhow::Result<String> {
    let team: Created = post_json(cp, "/api/v1/teams", operator_token, &json!({"name": "Bench"})).await?;
    let provider: Created = post_json(
        cp,
        "/api/v1/providers",
        operator_token,
        &json!({"name": "bench-mock", "kind": "openai_compatible", "base_url": mock_url,
                "api_key": "mock-upstream-credential"}),
    )
    .await?;
    let _: Created = post_json(
        cp,
        "/api/v1/models",
        operator_token,
        &json!({"name": MODEL, "input_price_per_mtok": 500_000, "output_price_per_mtok": 1_500_000,
                "targets": [{"provider_id": provider.id, "upstream_model": "mock-model"}]}),
    )
    .await?;
    let key: Issued =
        post_json(cp, &format!("/api/v1/teams/{}/keys", team.id), operator_token, &json!({"name": "bench"})).await?;
    Ok(key.key)
}
