//! Black-box tests: a real sandbox on a loopback port, driven over HTTP with reqwest, checked
//! the way a client of amoCRM would see it.

mod sandbox {
    pub mod common;

    mod account;
    mod auth_limits;
    mod complex;
    mod contacts_notes_tasks;
    mod control;
    mod custom_fields;
    mod faults;
    mod leads;
    mod oauth;
    mod webhooks;
}
