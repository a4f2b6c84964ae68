//! The dashboard: one page at `GET /`, with its script, style sheet and charting library (uPlot, vendored in
//! `dashboard/vendor/uplot/` with its licence), all embedded in the binary. Nothing is fetched from elsewhere: the
//! node runs behind a firewall. The page reads the API from the same origin and is read-only.
//!
//! Every file is served with a Content-Security-Policy that allows scripts, styles, images and connections from this
//! origin only: no inline script or style, no `eval`, no frames, no forms posting anywhere.

use warp::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

/// What the page may load: its own origin's files and API, nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The vendored charting library's version (`dashboard/vendor/uplot/README.md`).
pub const UPLOT_VERSION: &str = "1.6.32";

/// One embedded file: its name under `/assets/` (empty for the page itself), type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

static PAGE: Asset = Asset {
    name: "",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("dashboard/index.html"),
};

static ASSETS: [Asset; 5] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("dashboard/app.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("dashboard/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("dashboard/icon.svg"),
    },
];

/// The page and everything it loads, in bytes: kept under 300 KB (a unit test checks).
pub fn total_size() -> usize {
    PAGE.bytes.len() + ASSETS.iter().map(|a| a.bytes.len()).sum::<usize>()
}

/// `GET /`.
pub fn page() -> Response {
    reply(&PAGE)
}

/// `GET /assets/{name}`, or `None` for an unknown name.
pub fn asset(name: &str) -> Option<Response> {
    ASSETS.iter().find(|a| a.name == name).map(reply)
}

fn reply(asset: &Asset) -> Response {
    let mut response = Response::new(asset.bytes.into());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // Small and local: always revalidate, so an upgraded daemon's page is used at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_all_it_loads_stay_under_300_kb() {
        assert!(total_size() < 300 * 1024, "{} bytes", total_size());
    }

    #[test]
    fn the_page_loads_only_files_that_are_served() {
        let page = std::str::from_utf8(PAGE.bytes).unwrap();
        for part in page.split("\"/assets/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(asset(name).is_some(), "{name} is not served");
        }
        // No inline script or style: the policy would block them.
        assert!(
            !page.contains("<script>") && !page.contains("<style") && !page.contains(" style=")
        );
    }
}
