# The three ways the gateway reaches an MCP server, in HCL.
version     = "v1"
environment = "sandbox"

# http (the default): Streamable HTTP to a URL.
mcp_server "weather" {
  url         = "https://weather.example.com/mcp"
  tool_prefix = "never"
  auth        = "none"
}

# stdio: the gateway's adapter spawns the server as a child process.
mcp_server "git" {
  transport = "stdio"
  command   = "uvx"
  args      = ["mcp-server-git", "--repository", "/srv/repo"]
  env       = { GIT_TERMINAL_PROMPT = "0" }
}

# plugin: a custom adapter binary, pinned by its SHA-256.
mcp_server "erp" {
  transport = "plugin"
  path      = "/opt/armoriq/adapters/erp-adapter"
  sha256    = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
  auth {
    type        = "api_key"
    api_key     = "$ERP_API_KEY"
    header_name = "X-ERP-Key"
  }
}

policy {
  allow = ["weather/*", "git/git_log", "git/git_diff", "erp/read_*"]
  deny  = ["erp/delete_*"]
}

gateway "local" {
  url     = "http://127.0.0.1:8080"
  api_key = "$ARMORIQ_ADMIN_KEY"
}
