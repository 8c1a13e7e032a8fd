//! Tests of the OAuth token endpoint and the token provider.
