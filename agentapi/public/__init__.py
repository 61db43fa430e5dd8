"""The public API for customer integrations (DESIGN §12) under /api/v1/public/: scoped API keys,
rate-limited per client, every call audited. Agents keep their device-token API (agentapi/apis)."""
