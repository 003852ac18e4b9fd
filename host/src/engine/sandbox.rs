//! What a component may not do, and what happens when it tries.
//!
//! Grants (`[components.<name>.grants]`) are checked against the manifest
//! when a version loads; at run time every refused use of a capability (an
//! ungranted stream or component, a bad key, memory past the limit) and every
//! attempt at the WASI files or network the host never grants is logged (target `wharf::sandbox`), counted
//! (`wharf_sandbox_refusals_total`) and answered as a plain failure, so the
//! operator sees a hostile or confused component and the host carries on.

use anyhow::{Result, bail};
use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime_wasi::p2::bindings::cli::environment;
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types::Descriptor};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::{tcp::TcpSocket, tcp_create_socket, udp::UdpSocket, udp_create_socket};
use wasmtime_wasi::p2::{SocketError, SocketResult};

use crate::config::Grants;
use crate::engine::bindings::{CapError, Manifest};
use crate::engine::runtime::{HostState, Runtime};
use crate::telemetry::RefusalLabels;

impl HostState {
    /// Refuses a capability use the component was not granted: logged and
    /// counted for the operator, `invalid` for the guest.
    pub fn refuse(&self, capability: &'static str, why: String) -> CapError {
        refused(&self.rt, &self.component.name, capability, &why);
        CapError::Invalid(why)
    }

    /// Refuses a WASI call the host never grants; the guest gets WASI's own error.
    fn refuse_wasi(&self, capability: &'static str, what: &str) {
        refused(&self.rt, &self.component.name, capability, what);
    }
}

fn refused(rt: &Runtime, component: &str, capability: &'static str, why: &str) {
    tracing::warn!(target: "wharf::sandbox", component, capability, "refused: {why}");
    let labels = RefusalLabels { component: component.to_string(), capability };
    rt.metrics.sandbox_refusals.get_or_create(&labels).inc();
}

/// The manifest must ask for no stream its grants leave out: better a
/// refused load (or swap) than a component that silently half works.
/// Under grants a consumer group is named after its component (`<name>` or
/// `<name>-...`): a component granted a stream cannot join another's group
/// and take its events.
pub fn check_grants(m: &Manifest, g: &Grants) -> Result<()> {
    let name = &m.name;
    for s in &m.subscriptions {
        if !g.consume.contains(&s.stream) {
            bail!("{name} consumes stream {}, which [components.{name}.grants] consume does not grant", s.stream);
        }
        let own = s.group == *name || s.group.strip_prefix(name.as_str()).is_some_and(|rest| rest.starts_with('-'));
        if !own {
            bail!(
                "{name} reads {} in group {}: under grants its groups are named {name} or {name}-...",
                s.stream,
                s.group
            );
        }
    }
    for s in &m.publishes {
        if !g.publish.contains(s) {
            bail!("{name} publishes to stream {s}, which [components.{name}.grants] publish does not grant");
        }
    }
    Ok(())
}

/// The per-component memory cap. A refused `memory.grow` returns -1 to the
/// guest (a Rust guest then aborts: a trap, so a 500 or a retried event).
impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired <= self.memory_bytes {
            return Ok(true);
        }
        let why = format!("memory growth to {desired} bytes; the limit is {}", self.memory_bytes);
        refused(&self.rt, &self.component.name, "memory", &why);
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
        let component = self.component.name.as_str();
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
        self.refuse_wasi("files", "opening files: no directory is granted to components");
        Ok(Vec::new())
    }
}

impl tcp_create_socket::Host for HostState {
    fn create_tcp_socket(&mut self, _family: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        self.refuse_wasi("network", "opening a TCP socket: components have no network");
        Err(ErrorCode::AccessDenied.into())
    }
}

impl udp_create_socket::Host for HostState {
    async fn create_udp_socket(&mut self, _family: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        self.refuse_wasi("network", "opening a UDP socket: components have no network");
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
