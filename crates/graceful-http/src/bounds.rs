use std::error::Error as StdError;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;

/// A boxed error, as hyper takes them.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A response body `http::serve` can send: its chunks and errors cross
/// threads. Implemented for every such body.
pub trait HttpBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

impl<B> HttpBody for B
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
}

/// A service `http::serve` accepts: any hyper `Service` for requests of
/// the server, cloned for each connection, whose future, error and body can
/// cross threads. Implemented for every such service (an axum `Router`
/// through `hyper_util::service::TowerToHyperService`).
pub trait HttpService:
    Service<
        Request<Incoming>,
        Response = Response<Self::ResBody>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The response body.
    type ResBody: HttpBody;
}

impl<S, B> HttpService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: HttpBody,
{
    type ResBody = B;
}
