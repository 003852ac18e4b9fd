//! What a component may not do outside the capabilities: grow its memory
//! past its limit, or reach the WASI files, network and environment the host
//! never grants. Each attempt is refused as the capabilities refuse theirs
//! (`capability::refusals`: logged, counted, a plain failure for the guest).
//! The capabilities check their own grants (`events::check_grants` at load,
//! each context at every call).

use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime_wasi::p2::bindings::cli::environment;
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types::Descriptor};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::{tcp::TcpSocket, tcp_create_socket, udp::UdpSocket, udp_create_socket};
use wasmtime_wasi::p2::{SocketError, SocketResult};

use crate::engine::state::HostState;

/// The per-component memory cap. A refused `memory.grow` returns -1 to the
/// guest (a Rust guest then aborts: a trap, so a 500 or a retried event).
impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired <= self.memory_bytes {
            // The largest memory: it is the one that may run out.
            self.memory_size = self.memory_size.max(desired);
            return Ok(true);
        }
        let why = format!("memory growth to {desired} bytes; the limit is {}", self.memory_bytes);
        self.refusals().note("memory", &why);
        self.memory_refused = true;
        Ok(false)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables are bounded by the pooling allocator's own limit.
        Ok(true)
    }
}

/// Replaces the WASI functions through which a guest reaches the host's
/// environment, files and network with ones that refuse, and say so (the
/// environment only at debug level, see below). The WASI context is empty
/// anyway; these make the attempt visible.
pub fn add_wasi_refusals(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    environment::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    preopens::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    tcp_create_socket::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    udp_create_socket::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    linker.allow_shadowing(false);
    Ok(())
}

// Not counted as a refusal: Rust's panic handler reads RUST_BACKTRACE, so
// every panicking guest would look hostile. Logged at debug.
impl environment::Host for HostState {
    fn get_environment(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        let component = self.refusals().component();
        tracing::debug!(target: "wharf::sandbox", component, "environment read: components get none");
        Ok(Vec::new())
    }

    fn get_arguments(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn initial_cwd(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
}

impl preopens::Host for HostState {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        self.refusals().note("files", "opening files: no directory is granted to components");
        Ok(Vec::new())
    }
}

impl tcp_create_socket::Host for HostState {
    fn create_tcp_socket(&mut self, _family: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        self.refusals().note("network", "opening a TCP socket: components have no network");
        Err(ErrorCode::AccessDenied.into())
    }
}

impl udp_create_socket::Host for HostState {
    async fn create_udp_socket(&mut self, _family: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        self.refusals().note("network", "opening a UDP socket: components have no network");
        Err(ErrorCode::AccessDenied.into())
    }
}

// The socket constructors above need these; the rest of `wasi:sockets/network`
// stays wasmtime-wasi's own.
impl network::Host for HostState {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        error.downcast()
    }

    fn network_error_code(&mut self, _err: Resource<network::Error>) -> wasmtime::Result<Option<ErrorCode>> {
        Ok(None)
    }
}

impl network::HostNetwork for HostState {
    fn drop(&mut self, this: Resource<network::Network>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
