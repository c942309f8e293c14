//! Every console list searches in the database and paginates: the search is a case-insensitive substring whose
//! `%` and `_` match themselves, the pager keeps the search, and a page past the end shows the last one.

use reqwest::StatusCode;
use serde_json::json;

use crate::console_helpers::ConsoleSession;
use crate::helpers::{Backend, spawn_app};

async fn lists_search_escaped_and_page_with_the_search_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..30 {
        app.create_team(&format!("Team {i:02}")).await;
    }
    app.api_post("/teams", &json!({ "name": "100% real_team", "slug": "real" })).await;
    let op = ConsoleSession::operator(&app).await;

    let first = op.get("/console/teams").await;
    first.assert_status(StatusCode::OK).assert_contains("Page 1 of 2").assert_contains("31 teams");
    assert!(first.body.contains("href=\"/console/teams?q=&#38;page=2\""), "{}", first.body);
    op.get("/console/teams?page=2").await.assert_contains("Page 2 of 2").assert_contains("Team 29");
    // Past the end: the last page.
    op.get("/console/teams?page=99").await.assert_contains("Page 2 of 2");

    // Case-insensitive substring, kept in the pager and the box.
    let found = op.get("/console/teams?q=team+0").await;
    found.assert_contains("Page 1 of 1").assert_contains("10 teams matching").assert_contains("value=\"team 0\"");
    assert!(!found.body.contains("Team 10"));
    // `%` and `_` are literal characters, not wildcards.
    let percent = op.get("/console/teams?q=%25").await;
    percent.assert_contains("1 teams matching").assert_contains("100% real_team");
    let underscore = op.get("/console/teams?q=l_t").await;
    underscore.assert_contains("1 teams matching");
    op.get("/console/teams?q=m_0").await.assert_contains("No teams match");

    // The other lists search the same way.
    let provider = app.create_provider("openai-main", "http://127.0.0.1:9/v1", None).await;
    app.create_provider("local-vllm", "http://127.0.0.1:8/v1", None).await;
    let p = op.get("/console/providers?q=VLLM").await;
    p.assert_status(StatusCode::OK).assert_contains("local-vllm");
    assert!(!p.body.contains("openai-main"));
    app.create_simple_model("gpt-4o", provider.id, "gpt-4o", 1, 1).await;
    app.create_simple_model("claude-3", provider.id, "c", 1, 1).await;
    let m = op.get("/console/models?q=gpt").await;
    m.assert_contains("gpt-4o");
    assert!(!m.body.contains("claude-3"));
    let team = app.list_teams().await[0].id;
    let member = op.add_user(&app, team, "searchable@example.com", "member").await;
    drop(member);
    let u = op.get("/console/users?q=SEARCHABLE").await;
    u.assert_contains("searchable@example.com").assert_contains("1 users matching");
    op.get("/console/nodes?q=none").await.assert_status(StatusCode::OK).assert_contains("No node matches");
    let a = op.get("/console/audit?q=provider.create").await;
    a.assert_status(StatusCode::OK).assert_contains("provider.create");
    assert!(!a.body.contains("team.create"));

    // Keys on the team page, with the pager coming back to the key list.
    for i in 0..27 {
        app.issue_key(team, &json!({ "name": format!("key-{i:02}") })).await;
    }
    let keys = op.get(&format!("/console/teams/{team}")).await;
    keys.assert_contains("Page 1 of 2").assert_contains("27 keys");
    assert!(keys.body.contains(&format!("/console/teams/{team}?q=&#38;page=2#keys")), "{}", keys.body);
    let k = op.get(&format!("/console/teams/{team}?q=key-1")).await;
    k.assert_contains("10 keys matching").assert_contains("key-19");
    assert!(!k.body.contains("key-20"));
}

backend_tests!(lists_search_escaped_and_page_with_the_search_kept);
