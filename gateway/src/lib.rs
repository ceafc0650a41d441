//! The Assent gateway (GraphQL over HTTP). Built in the gateway issue.
