//! The endpoints: one Lambda function each. Their names, methods and paths (templates with
//! `{parameters}`) as the code knows them, which a test checks against endpoints.toml (what
//! template.yaml, the watch router and events/ are generated from), and the matcher that
//! reads path parameters from a request path.

use crate::error::ApiError;
use crate::fields::{Email, Id};
use lambda_http::http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Health,
    Me,
    UsersUpsert,
    Events,
    ProductsUpsert,
    SalesUpsert,
    ConversationsUpsert,
    MessagesUpsert,
    BookingsUpsert,
    Batch,
    UsersGet,
    UsersList,
    StatsUsers,
    ConversationsGet,
    Inbox,
    BookingsList,
    ChangesList,
    UsersDelete,
}

pub const API_BASE_PATH: &str = "/api/developer/";

impl Endpoint {
    /// Writes, then reads, then the erasure (the order `make bench` runs them in over one
    /// data set).
    pub const ALL: [Endpoint; 18] = [
        Endpoint::Health,
        Endpoint::Me,
        Endpoint::UsersUpsert,
        Endpoint::Events,
        Endpoint::ProductsUpsert,
        Endpoint::SalesUpsert,
        Endpoint::ConversationsUpsert,
        Endpoint::MessagesUpsert,
        Endpoint::BookingsUpsert,
        Endpoint::Batch,
        Endpoint::UsersGet,
        Endpoint::UsersList,
        Endpoint::StatsUsers,
        Endpoint::ConversationsGet,
        Endpoint::Inbox,
        Endpoint::BookingsList,
        Endpoint::ChangesList,
        Endpoint::UsersDelete,
    ];

    /// The function (binary and package) name under `functions/`.
    pub fn function_name(self) -> &'static str {
        match self {
            Endpoint::Health => "health",
            Endpoint::Me => "me",
            Endpoint::UsersUpsert => "users-upsert",
            Endpoint::Events => "events",
            Endpoint::ProductsUpsert => "products-upsert",
            Endpoint::SalesUpsert => "sales-upsert",
            Endpoint::ConversationsUpsert => "conversations-upsert",
            Endpoint::MessagesUpsert => "messages-upsert",
            Endpoint::BookingsUpsert => "bookings-upsert",
            Endpoint::Batch => "batch",
            Endpoint::UsersGet => "users-get",
            Endpoint::UsersList => "users-list",
            Endpoint::StatsUsers => "stats-users",
            Endpoint::UsersDelete => "users-delete",
            Endpoint::ConversationsGet => "conversations-get",
            Endpoint::Inbox => "inbox",
            Endpoint::BookingsList => "bookings-list",
            Endpoint::ChangesList => "changes-list",
        }
    }

    /// The path template below [`API_BASE_PATH`], with its trailing slash; `{name}` is a
    /// path parameter (one segment).
    pub fn relative_path(self) -> &'static str {
        match self {
            Endpoint::Health => "health/",
            Endpoint::Me => "me/",
            Endpoint::UsersUpsert => "users/upsert/",
            Endpoint::Events => "events/",
            Endpoint::ProductsUpsert => "products/upsert/",
            Endpoint::SalesUpsert => "sales/upsert/",
            Endpoint::ConversationsUpsert => "conversations/upsert/",
            Endpoint::MessagesUpsert => "messages/upsert/",
            Endpoint::BookingsUpsert => "bookings/upsert/",
            Endpoint::Batch => "batch/",
            Endpoint::UsersGet | Endpoint::UsersDelete => "users/{external_user_id}/",
            Endpoint::UsersList => "users/",
            Endpoint::StatsUsers => "stats/users/",
            Endpoint::ConversationsGet => "conversations/{thread_id}/",
            Endpoint::Inbox => "inbox/",
            Endpoint::BookingsList => "bookings/",
            Endpoint::ChangesList => "changes/",
        }
    }

    /// The full path template, e.g. `/api/developer/users/{external_user_id}/`.
    pub fn path(self) -> String {
        format!("{API_BASE_PATH}{}", self.relative_path())
    }

    /// Another path template the endpoint also answers: a client known only by its email
    /// is read and erased at `users/email/{email}/` (two segments, so it never shadows an
    /// `external_user_id`; on AWS the `users/{external_user_id}/{proxy+}` route carries it).
    pub fn alternate_relative_path(self) -> Option<&'static str> {
        match self {
            Endpoint::UsersGet | Endpoint::UsersDelete => Some(USER_BY_EMAIL_PATH),
            _ => None,
        }
    }

    /// Every full path template the endpoint answers.
    pub fn paths(self) -> Vec<String> {
        std::iter::once(self.relative_path())
            .chain(self.alternate_relative_path())
            .map(|path| format!("{API_BASE_PATH}{path}"))
            .collect()
    }

    /// The path with each parameter replaced by a value: what a client sends.
    pub fn path_with(self, values: &[&str]) -> String {
        let mut values = values.iter();
        let segments: Vec<String> = self
            .relative_path()
            .trim_end_matches('/')
            .split('/')
            .map(|segment| match parameter_name(segment) {
                Some(_) => {
                    let value = values.next().expect("a value for every parameter");
                    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
                }
                None => segment.to_owned(),
            })
            .collect();
        format!("{API_BASE_PATH}{}/", segments.join("/"))
    }

    pub fn method(self) -> Method {
        match self {
            Endpoint::UsersUpsert
            | Endpoint::Events
            | Endpoint::ProductsUpsert
            | Endpoint::SalesUpsert
            | Endpoint::ConversationsUpsert
            | Endpoint::MessagesUpsert
            | Endpoint::BookingsUpsert
            | Endpoint::Batch => Method::POST,
            Endpoint::UsersDelete => Method::DELETE,
            _ => Method::GET,
        }
    }

    pub fn method_name(self) -> &'static str {
        match self.method() {
            Method::POST => "POST",
            Method::DELETE => "DELETE",
            _ => "GET",
        }
    }

    pub fn requires_api_key(self) -> bool {
        self != Endpoint::Health
    }

    /// The org-wide list the endpoint pages through, if it is one of those.
    pub fn org_list(self) -> Option<crate::store::keys::OrgList> {
        use crate::store::keys::OrgList;
        match self {
            Endpoint::UsersList => Some(OrgList::Users),
            Endpoint::Inbox => Some(OrgList::Inbox),
            Endpoint::BookingsList => Some(OrgList::Bookings),
            _ => None,
        }
    }

    pub fn from_function_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.function_name() == name)
    }

    /// Matches a request path against this endpoint's template: the part after
    /// `/api/developer/` (so a stage prefix does not matter), with or without the trailing
    /// slash. Parameters are percent-decoded; `None` when the path is not this endpoint's.
    pub fn match_path(self, raw_path: &str) -> Option<PathParams> {
        std::iter::once(self.relative_path())
            .chain(self.alternate_relative_path())
            .find_map(|template| match_template(template, raw_path))
    }
}

/// The client known only by its email, below [`API_BASE_PATH`].
pub const USER_BY_EMAIL_PATH: &str = "users/email/{email}/";

fn match_template(template: &'static str, raw_path: &str) -> Option<PathParams> {
    {
        let base = API_BASE_PATH.trim_end_matches('/');
        let start = raw_path.find(base)? + base.len();
        let rest = raw_path[start..].strip_prefix('/')?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let template = template.trim_end_matches('/');
        let (mut segments, mut expected) = (rest.split('/'), template.split('/'));
        let mut params = Vec::new();
        loop {
            match (segments.next(), expected.next()) {
                (None, None) => return Some(PathParams(params)),
                (Some(segment), Some(pattern)) => match parameter_name(pattern) {
                    Some(name) => {
                        let value = percent_encoding::percent_decode_str(segment)
                            .decode_utf8()
                            .ok()?;
                        if value.trim().is_empty() {
                            return None;
                        }
                        params.push((name, value.into_owned()));
                    }
                    None if segment == pattern => {}
                    None => return None,
                },
                _ => return None,
            }
        }
    }
}

/// Characters escaped in a path segment built by [`Endpoint::path_with`].
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

fn parameter_name(segment: &str) -> Option<&str> {
    segment.strip_prefix('{')?.strip_suffix('}')
}

/// The decoded path parameters of a matched request, by template name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams(Vec<(&'static str, String)>);

impl PathParams {
    /// The `email` parameter, normalized like an email in a body, if the path has one.
    pub fn email(&self) -> Result<Option<Email>, ApiError> {
        let Some((_, raw)) = self.0.iter().find(|(param, _)| *param == "email") else {
            return Ok(None);
        };
        raw.parse()
            .map(Some)
            .map_err(|error| ApiError::invalid_field("email", format!("`email` {error}")))
    }

    /// The parameter as the same typed id the write side uses (trimmed, bounded, no
    /// control characters); a malformed one is a 400 naming the parameter.
    pub fn id(&self, name: &str) -> Result<Id, ApiError> {
        let raw = self
            .0
            .iter()
            .find(|(param, _)| *param == name)
            .map(|(_, value)| value.as_str())
            .ok_or(ApiError::NotFound)?;
        parse_id(raw).map_err(|error| ApiError::invalid_field(name, format!("`{name}` {error}")))
    }
}

pub use crate::fields::parse_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_and_without_slash_and_behind_a_stage() {
        for path in [
            "/api/developer/users/",
            "/api/developer/users",
            "/prod/api/developer/users/",
        ] {
            assert!(Endpoint::UsersList.match_path(path).is_some(), "{path}");
        }
        for path in [
            "/api/developer/users/u1/",
            "/api/developer/users//",
            "/api/developer/health/",
        ] {
            assert!(Endpoint::UsersList.match_path(path).is_none(), "{path}");
        }
    }

    #[test]
    fn parameters_are_decoded_into_ids() {
        let params = Endpoint::UsersGet
            .match_path("/stage/api/developer/users/usr%20%2F1%40x/")
            .unwrap();
        assert_eq!(params.id("external_user_id").unwrap().as_str(), "usr /1@x");
        let params = Endpoint::ConversationsGet
            .match_path("/api/developer/conversations/t1")
            .unwrap();
        assert_eq!(params.id("thread_id").unwrap().as_str(), "t1");
        assert!(Endpoint::UsersGet
            .match_path("/api/developer/users/u1/extra/")
            .is_none());
        assert!(Endpoint::UsersGet
            .match_path("/api/developer/users/%20/")
            .is_none());
    }

    #[test]
    fn malformed_ids_name_the_parameter() {
        let long = "x".repeat(crate::fields::MAX_ID_CHARS + 1);
        let params = Endpoint::UsersGet
            .match_path(&format!("/api/developer/users/{long}/"))
            .unwrap();
        let error = params.id("external_user_id").unwrap_err();
        assert_eq!(error.param(), Some("external_user_id"));
    }

    #[test]
    fn built_paths_round_trip() {
        let path = Endpoint::UsersGet.path_with(&["a b/c"]);
        assert_eq!(path, "/api/developer/users/a%20b%2Fc/");
        let params = Endpoint::UsersGet.match_path(&path).unwrap();
        assert_eq!(params.id("external_user_id").unwrap().as_str(), "a b/c");
    }
}
