import { useCallback, useEffect, useState } from "react";
import { listHosts, type Host } from "./api.ts";
import { formatBytes } from "./format.ts";

type Load = { kind: "loading" } | { kind: "ok"; hosts: Host[] } | { kind: "error"; message: string };

const REFRESH_MS = 5000;

export function HostsTable() {
  const [load, setLoad] = useState<Load>({ kind: "loading" });

  const refresh = useCallback(async (signal?: AbortSignal) => {
    try {
      const hosts = await listHosts(signal);
      setLoad({ kind: "ok", hosts: Array.isArray(hosts) ? hosts : [] });
    } catch (e) {
      if (e instanceof DOMException && e.name === "AbortError") return;
      setLoad({ kind: "error", message: e instanceof Error ? e.message : String(e) });
    }
  }, []);

  useEffect(() => {
    const ctl = new AbortController();
    void refresh(ctl.signal);
    const t = window.setInterval(() => void refresh(ctl.signal), REFRESH_MS);
    return () => {
      ctl.abort();
      window.clearInterval(t);
    };
  }, [refresh]);

  return (
    <section className="panel" aria-labelledby="hosts-title">
      <div className="panel-head">
        <h2 id="hosts-title">Hosts</h2>
        <button type="button" onClick={() => void refresh()}>
          Refresh
        </button>
      </div>
      {load.kind === "error" && (
        <div className="banner error" role="alert" data-testid="api-error">
          <strong>The control plane API is unreachable.</strong> {load.message}
        </div>
      )}
      {load.kind === "loading" && <p className="muted">Loading hosts…</p>}
      {load.kind === "ok" && load.hosts.length === 0 && (
        <p className="empty" data-testid="hosts-empty">
          No hosts yet — use Add Host
        </p>
      )}
      {load.kind === "ok" && load.hosts.length > 0 && (
        <table className="hosts" data-testid="hosts-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Address</th>
              <th>Docker</th>
              <th className="num">CPUs</th>
              <th className="num">Memory</th>
            </tr>
          </thead>
          <tbody>
            {load.hosts.map((h) => (
              <tr key={h.name}>
                <td>{h.name}</td>
                <td>
                  <span className={`state state-${h.state}`}>{h.state}</span>
                </td>
                <td>{h.address}</td>
                <td>{h.docker_version}</td>
                <td className="num">{h.cpus}</td>
                <td className="num">{formatBytes(h.memory_bytes)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
