//! The endpoints: one Lambda function each. The single list of names, methods and paths
//! that template.yaml, the watch router and events/ are checked against.

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
}

pub const API_BASE_PATH: &str = "/api/developer/";

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Health,
        Endpoint::Me,
        Endpoint::UsersUpsert,
        Endpoint::Events,
        Endpoint::ProductsUpsert,
        Endpoint::SalesUpsert,
        Endpoint::ConversationsUpsert,
        Endpoint::MessagesUpsert,
        Endpoint::BookingsUpsert,
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
        }
    }

    /// The path below [`API_BASE_PATH`], with its trailing slash.
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
        }
    }

    pub fn path(self) -> String {
        format!("{API_BASE_PATH}{}", self.relative_path())
    }

    pub fn method(self) -> Method {
        match self {
            Endpoint::Health | Endpoint::Me => Method::GET,
            _ => Method::POST,
        }
    }

    pub fn method_name(self) -> &'static str {
        if self.method() == Method::GET {
            "GET"
        } else {
            "POST"
        }
    }

    pub fn requires_api_key(self) -> bool {
        self != Endpoint::Health
    }

    pub fn from_function_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.function_name() == name)
    }
}
