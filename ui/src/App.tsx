import { HostsTable } from "./HostsTable.tsx";

export function App() {
  return (
    <div className="app">
      <header className="topbar">
        <h1>Corral</h1>
        <span className="tagline">Docker hosts, stacks and services</span>
      </header>
      <main>
        <HostsTable />
      </main>
    </div>
  );
}
