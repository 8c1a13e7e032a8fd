//! Tests of the OAuth redirect pages.
