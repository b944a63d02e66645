//! Feast's gRPC contract, `proto/`, compiled without `protoc`: the services' Rust code
//! (the value types are `encoding::proto`'s) and the descriptor set that reflection
//! serves and the tests compare with the installed Feast's.

use std::path::PathBuf;

use prost::Message;

const FILES: [&str; 3] = [
    "feast/serving/GrpcServer.proto",
    "feast/serving/ServingService.proto",
    "feast/types/Value.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(FILES, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("feast_descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_transport(false)
        .extern_path(".feast.types", "crate::encoding::proto")
        .extern_path(".google.protobuf.Timestamp", "crate::encoding::proto::Timestamp")
        // Entity columns in the order sent (a generated map would lose it), and answers
        // written from the stored bytes rather than built as messages.
        .extern_path(
            ".feast.serving.GetOnlineFeaturesRequest",
            "crate::server::grpc::OnlineFeaturesRequest",
        )
        .extern_path(
            ".feast.serving.GetOnlineFeaturesResponse",
            "crate::server::grpc::WrittenMessage",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
