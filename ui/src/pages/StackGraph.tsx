// The stack as a graph: one node per service, coloured by health, and an edge from each load
// balancer to every service it sends requests to (its default targets and its rules). elkjs lays
// it out again only when nodes or edges change; a change in running counts just recolours.
// Each node is a link to its service's page: a click, Enter (Tab reaches it) or a middle click.

import { Badge, Group, Paper, Stack, Text } from "@mantine/core";
import { Background, Controls, Handle, MarkerType, Position, ReactFlow, type Edge, type Node, type NodeProps } from "@xyflow/react";
import ELK from "elkjs/lib/elk.bundled.js";
import { useEffect, useMemo, useState } from "react";
import { Link } from "react-router";
import type { Service } from "../api.ts";
import { EmptyState } from "../components/common.tsx";
import { HEALTH_COLOR, serviceHealth, type Health } from "../health.ts";

const elk = new ELK();
const NODE_W = 220;
const NODE_H = 70;

interface ServiceNodeData extends Record<string, unknown> {
  name: string;
  detail: string;
  health: Health | "external";
  lb: boolean;
  /** The service's page. */
  href: string;
}

/** `STACK/NAME` → the service's page. */
const servicePage = (id: string) => {
  const [stack = "", ...rest] = id.split("/");
  return `/stacks/${encodeURIComponent(stack)}/services/${encodeURIComponent(rest.join("/"))}`;
};

type ServiceNode = Node<ServiceNodeData, "service">;

function ServiceNodeView({ data }: NodeProps<ServiceNode>) {
  const color = data.health === "external" ? "gray" : HEALTH_COLOR[data.health];
  return (
    <Paper
      component={Link}
      to={data.href}
      aria-label={`Service ${data.name}: ${data.detail}`}
      withBorder
      shadow="xs"
      p="xs"
      w={NODE_W}
      h={NODE_H}
      display="block"
      c="inherit"
      td="none"
      data-testid="graph-node"
      data-service={data.name}
      data-health={data.health}
      style={{ borderColor: `var(--mantine-color-${color}-6)`, borderWidth: 2, borderStyle: data.health === "external" ? "dashed" : "solid" }}
    >
      <Handle type="target" position={Position.Left} />
      <Group gap={6} wrap="nowrap">
        <span style={{ width: 10, height: 10, borderRadius: 5, flex: "none", background: `var(--mantine-color-${color}-6)` }} />
        <Text fw={600} size="sm" truncate>
          {data.name}
        </Text>
        {data.lb && (
          <Badge size="xs" variant="outline">
            LB
          </Badge>
        )}
      </Group>
      <Text size="xs" c="dimmed" truncate>
        {data.detail}
      </Text>
      <Handle type="source" position={Position.Right} />
    </Paper>
  );
}

const nodeTypes = { service: ServiceNodeView };

function buildGraph(services: Service[]): { nodes: ServiceNode[]; edges: Edge[] } {
  const nodes = new Map<string, ServiceNode>();
  for (const s of services) {
    const id = `${s.stack}/${s.name}`;
    const health = serviceHealth(s);
    nodes.set(id, {
      id,
      type: "service",
      position: { x: 0, y: 0 },
      data: {
        name: s.name,
        lb: s.kind === "load-balancer",
        health,
        href: servicePage(id),
        detail: `${s.running}/${s.scale} running${s.state === "stopped" ? " · stopped" : ""} · ${s.kind === "load-balancer" ? (s.lb?.ports ?? []).map((p) => p.listen).join(", ") : s.image}`,
      },
    });
  }
  const edges: Edge[] = [];
  const edge = (from: string, to: string, label?: string) => {
    // A target in another stack (or not created yet) still gets a node, drawn dashed.
    if (!nodes.has(to)) {
      nodes.set(to, { id: to, type: "service", position: { x: 0, y: 0 }, data: { name: to, lb: false, health: "external", detail: "not in this stack", href: servicePage(to) } });
    }
    edges.push({
      id: `${from}->${to}${label ? `#${label}` : ""}`,
      source: from,
      target: to,
      label,
      animated: true,
      markerEnd: { type: MarkerType.ArrowClosed },
    });
  };
  for (const s of services) {
    if (!s.lb) continue;
    const from = `${s.stack}/${s.name}`;
    for (const t of s.lb.targets) edge(from, t);
    for (const r of s.lb.rules) edge(from, r.service, `${r.host ?? ""}${r.path ?? ""}:${r.port}`);
  }
  return { nodes: [...nodes.values()], edges };
}

export default function StackGraph({ services }: { services: Service[] }) {
  const { nodes, edges } = useMemo(() => buildGraph(services), [services]);
  const shape = useMemo(() => JSON.stringify([nodes.map((n) => n.id).sort(), edges.map((e) => e.id).sort()]), [nodes, edges]);
  const [layout, setLayout] = useState<{ shape: string; positions: Record<string, { x: number; y: number }> } | null>(null);
  const [scheme, setScheme] = useState<"light" | "dark">(() => (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));

  useEffect(() => {
    const q = matchMedia("(prefers-color-scheme: dark)");
    const on = () => setScheme(q.matches ? "dark" : "light");
    q.addEventListener("change", on);
    return () => q.removeEventListener("change", on);
  }, []);

  useEffect(() => {
    let cancelled = false;
    const [ids, edgeIds] = JSON.parse(shape) as [string[], string[]];
    elk
      .layout({
        id: "root",
        layoutOptions: {
          "elk.algorithm": "layered",
          "elk.direction": "RIGHT",
          "elk.spacing.nodeNode": "40",
          "elk.layered.spacing.nodeNodeBetweenLayers": "90",
        },
        children: ids.map((id) => ({ id, width: NODE_W, height: NODE_H })),
        edges: edgeIds.map((id) => {
          const [from, rest] = id.split("->") as [string, string];
          return { id, sources: [from], targets: [rest.split("#")[0]!] };
        }),
      })
      .then((g) => {
        if (cancelled) return;
        const positions: Record<string, { x: number; y: number }> = {};
        for (const c of g.children ?? []) positions[c.id] = { x: c.x ?? 0, y: c.y ?? 0 };
        setLayout({ shape, positions });
      })
      .catch(() => {
        // Without a layout, a plain grid still shows every service.
        if (cancelled) return;
        const positions: Record<string, { x: number; y: number }> = {};
        ids.forEach((id, i) => (positions[id] = { x: (i % 4) * (NODE_W + 40), y: Math.floor(i / 4) * (NODE_H + 40) }));
        setLayout({ shape, positions });
      });
    return () => {
      cancelled = true;
    };
  }, [shape]);

  if (nodes.length === 0) {
    return (
      <EmptyState title="Nothing to draw yet" testId="graph-empty">
        Add services and a load balancer targeting them: each service becomes a node, each balancer target an edge.
      </EmptyState>
    );
  }
  const ready = layout !== null && layout.shape === shape;
  const placed = nodes.map((n) => ({ ...n, position: layout?.positions[n.id] ?? n.position }));
  return (
    <Stack gap="xs">
      <Group gap="md">
        {(["healthy", "degraded", "down", "stopped"] as const).map((h) => (
          <Group key={h} gap={4}>
            <span style={{ width: 10, height: 10, borderRadius: 5, background: `var(--mantine-color-${HEALTH_COLOR[h]}-6)` }} />
            <Text size="xs" c="dimmed">
              {h}
            </Text>
          </Group>
        ))}
      </Group>
      <Paper withBorder h="min(70vh, 640px)" data-testid="graph" data-ready={ready}>
        {ready && (
          <ReactFlow
            key={shape}
            nodes={placed}
            edges={edges}
            nodeTypes={nodeTypes}
            colorMode={scheme}
            fitView
            fitViewOptions={{ padding: 0.2, maxZoom: 1.2 }}
            nodesDraggable={false}
            nodesConnectable={false}
            // The links inside the nodes take the focus, and Enter follows them.
            nodesFocusable={false}
            edgesFocusable={false}
            proOptions={{ hideAttribution: true }}
          >
            <Background />
            <Controls showInteractive={false} />
          </ReactFlow>
        )}
      </Paper>
    </Stack>
  );
}
