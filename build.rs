//! Generates the gRPC example's service code (`examples/grpc.rs`) from its
//! Rust description, with tonic-build's manual mode: no `.proto` file and
//! no protoc needed. The messages live in `examples/common/work.rs`.

fn main() {
    use tonic_build::manual::{Builder, Method, Service};
    let method = |name: &str, route: &str, input: &str, output: &str| {
        Method::builder()
            .name(name)
            .route_name(route)
            .input_type(format!("super::{input}"))
            .output_type(format!("super::{output}"))
            .codec_path("tonic_prost::ProstCodec")
    };
    let work = Service::builder()
        .name("Work")
        .package("graceful.example")
        .comment("Work that takes time, for showing a stop.")
        .method(method("sleep", "Sleep", "SleepRequest", "SleepReply").build())
        .method(
            method("count", "Count", "CountRequest", "Tick")
                .server_streaming()
                .build(),
        )
        .build();
    // The clients are generic over the channel (the tests bring tonic's).
    Builder::new().build_transport(false).compile(&[work]);
    println!("cargo:rerun-if-changed=build.rs");
}
