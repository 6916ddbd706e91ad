//! Keyset pages for every List call: the token names the last row shown and
//! is bound to the request's filters.

use super::ApiError;
use crate::domain::page::{PageSize, PageToken};

/// The cursor in `raw` (a `next_page_token`), parsed as the list's key.
pub(super) fn cursor<T: std::str::FromStr>(
    raw: &str,
    filter_key: &str,
) -> Result<Option<T>, ApiError> {
    PageToken::decode(raw, filter_key)
        .map_err(ApiError::field("page_token"))?
        .map(|t| t.after.parse::<T>())
        .transpose()
        .map_err(|_| ApiError::invalid("page_token", "is not a token returned by this list call"))
}

/// Cuts `rows` (fetched with one extra row, which tells whether another page
/// follows) to the page size, and makes the token for the next page.
pub(super) fn page<T>(
    size: PageSize,
    filter_key: &str,
    mut rows: Vec<T>,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    if rows.len() > size.get() as usize {
        rows.truncate(size.get() as usize);
        let last = rows.last().map(&key).unwrap_or_default();
        (rows, PageToken::new(last, filter_key).encode())
    } else {
        (rows, String::new())
    }
}
