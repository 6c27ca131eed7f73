//! The HTTP client the API tests use: the testkit's, re-exported under the
//! names these tests import.

#![allow(unused_imports)]

pub use tributary_testkit::http::{Response, get, post_json, request, request_with};
pub use tributary_testkit::{free_port, poll_for as wait_for};
