//! The admin API's route table: one line per route — method, path, handler, who may call it, a summary, its
//! query parameters and body type. [`configure`] registers exactly these routes and [`ROUTES`] describes them,
//! so the OpenAPI document ([`super::openapi`]) is generated from the same lines that serve the API and cannot
//! miss a route.

use actix_web::web;

use super::{
    alerts, invoices, keys, limits, models, nodes, openapi, prices, providers, rollups, teams, usage, usage_export,
};

/// One documented route of `/api/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDoc {
    /// Lower-case HTTP method, as OpenAPI spells it.
    pub method: &'static str,
    /// Path below `/api/v1`, with `{name}` parameters.
    pub path: &'static str,
    pub operation_id: &'static str,
    /// Who may call it (roles are those of the token's user).
    pub who: &'static str,
    pub summary: &'static str,
    /// Query parameters, all optional.
    pub query: &'static [&'static str],
    /// The JSON body's type name, empty when the route takes none.
    pub body: &'static str,
    /// The success status.
    pub status: u16,
}

macro_rules! admin_routes {
    ($( $method:ident $path:literal => $module:ident :: $handler:ident, $status:literal, $who:literal, $summary:literal,
        query [$($q:literal),*], body $body:literal; )+) => {
        /// Registers every route of [`ROUTES`] on the `/api/v1` scope.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($module::$handler)); )+
        }

        pub const ROUTES: &[RouteDoc] = &[$(
            RouteDoc {
                method: stringify!($method),
                path: $path,
                operation_id: concat!(stringify!($module), ".", stringify!($handler)),
                who: $who,
                summary: $summary,
                query: &[$($q),*],
                body: $body,
                status: $status,
            },
        )+];
    };
}

admin_routes! {
    get "/openapi.json" => openapi::document, 200, "anyone", "This document.", query [], body "";
    post "/teams" => teams::create, 201, "operator", "Create a team.", query [], body "NewTeam";
    get "/teams" => teams::list, 200, "any user: the teams they can see", "List teams.", query [], body "";
    get "/teams/{id}" => teams::get, 200, "operator, finance, team members", "Show a team.", query [], body "";
    patch "/teams/{id}" => teams::update, 200, "operator",
        "Rename a team or set its invoice discount/markup (`markup_bp`: basis points, negative = discount).",
        query [], body "TeamUpdate";
    post "/teams/{id}/keys" => keys::issue, 201, "operator, team admin, team member",
        "Issue an API key; the answer holds the secret, once.", query [], body "NewKey";
    get "/teams/{id}/keys" => keys::list, 200, "operator, finance, team admin (all keys), team member (own keys)",
        "List a team's API keys.", query [], body "";
    post "/keys/{id}/revoke" => keys::revoke, 200, "operator, team admin, the member who issued it",
        "Revoke an API key.", query [], body "";
    post "/keys/{id}/rotate" => keys::rotate, 201, "operator, team admin, the member who issued it",
        "Rotate an API key: a new secret (shown once); the old one works until `grace_until`.",
        query [], body "Rotation";
    get "/teams/{id}/limits" => limits::get_team, 200, "operator, finance, team members",
        "A team's limits and budget status.", query [], body "";
    put "/teams/{id}/limits" => limits::set_team, 200, "operator", "Replace a team's limits.", query [],
        body "Limits";
    delete "/teams/{id}/limits" => limits::clear_team, 204, "operator", "Clear a team's limits.", query [], body "";
    get "/keys/{id}/limits" => limits::get_key, 200, "operator, finance, team members", "A key's limits.",
        query [], body "";
    put "/keys/{id}/limits" => limits::set_key, 200, "operator", "Replace a key's limits.", query [], body "Limits";
    delete "/keys/{id}/limits" => limits::clear_key, 204, "operator", "Clear a key's limits.", query [], body "";
    get "/alerts" => alerts::list, 200, "operator, finance; others pass one of their teams",
        "Budget alerts, newest first.", query ["team_id", "limit"], body "";
    post "/providers" => providers::create, 201, "operator", "Create a provider (the credential is write-only).",
        query [], body "ProviderInput";
    get "/providers" => providers::list, 200, "operator", "List providers.", query [], body "";
    post "/providers/from-preset" => providers::create_from_preset, 201, "operator",
        "Create a provider from a preset: base URL, auth style and models filled in; only the credential is pasted.",
        query [], body "FromPreset";
    get "/provider-presets" => providers::presets, 200, "operator", "List the provider presets.", query [], body "";
    put "/providers/{id}" => providers::update, 200, "operator", "Update a provider.", query [],
        body "ProviderInput";
    get "/upstream-status" => providers::upstream_status, 200, "operator",
        "Per upstream target (provider + upstream model): configured caps, the provider's advertised limits, use \
        of the caps as the nodes report it, throttled attempts, and saturated / cooling-down state.",
        query ["provider_id"], body "";
    post "/models" => models::create, 201, "operator", "Create a model with its targets and prices.", query [],
        body "ModelInput";
    get "/models" => models::list, 200, "operator, finance", "List models.", query [], body "";
    put "/models/{id}" => models::replace, 200, "operator", "Replace a model.", query [], body "ModelInput";
    delete "/models/{id}" => models::delete, 204, "operator", "Delete a model.", query [], body "";
    get "/models/{id}/prices" => prices::list, 200, "operator, finance", "A model's price versions.", query [], body "";
    post "/models/{id}/prices" => prices::create, 201, "operator",
        "Add a price version effective from a given instant.", query [], body "NewPriceVersion";
    get "/usage" => usage::query, 200, "operator, finance; others pass one of their teams",
        "Usage records, newest first, with totals.",
        query ["team_id", "key_id", "model", "from", "to", "limit", "before_id"], body "";
    get "/usage/export.csv" => usage_export::csv, 200, "operator, finance; team admin for her own team",
        "The raw usage records of a calendar month (`month=yyyy-mm`, reporting time zone) or of `[from, to)` \
        (RFC 3339) as CSV, one row per record, streamed; `team_id` narrows it to one team (required for team \
        admins).", query ["month", "team_id", "from", "to"], body "";
    get "/usage/rollups/check" => rollups::check, 200, "operator",
        "Recompute the usage rollups from the raw records and list any difference.", query [], body "";
    get "/teams/{id}/invoices/{month}.csv" => invoices::csv, 200, "operator, finance, team admin",
        "A team's invoice for a calendar month (`yyyy-mm`, reporting time zone) as CSV: a row per line item \
        (usage and late-usage adjustments), a markup row when there is a discount or markup, and a total row.",
        query [], body "";
    get "/teams/{id}/invoices/{month}" => invoices::get, 200, "operator, finance, team admin",
        "A team's invoice for a calendar month (`yyyy-mm`, reporting time zone): the issued document as stored, or \
        the live draft: lines per model and price version, adjustments, subtotal, discount/markup, total.",
        query [], body "";
    post "/teams/{id}/invoices/{month}/issue" => invoices::issue, 201, "operator, finance",
        "Issue (freeze) a team's invoice for a month that has ended: numbered `INV-000001`… gap-free, immutable; \
        409 if already issued or the month has not ended.", query [], body "";
    get "/invoices" => invoices::list, 200, "operator, finance (every team); team admin (own teams)",
        "Every visible team's invoice for `month` (yyyy-mm): status draft/issued, number, totals.",
        query ["month", "team_id"], body "";
    get "/reconciliation" => invoices::reconcile, 200, "operator, finance",
        "Every team's invoice totals for `month` (yyyy-mm) against the sum of the month's costed usage records.",
        query ["month"], body "";
    get "/nodes" => nodes::list, 200, "operator", "Data-plane nodes and their applied snapshot versions.",
        query [], body "";
}
