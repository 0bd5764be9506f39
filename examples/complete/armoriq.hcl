# The same config as armoriq.yaml, written in HCL.
# In HCL strings "${...}" is interpolation: write references as "$NAME" or "$${NAME}".
version     = "v1"
environment = "production"

identity {
  api_key  = "$ARMORIQ_API_KEY"
  user_id  = "platform-team"
  agent_id = "support-agent"
}

proxy {
  url         = "https://gateway.example.com"
  timeout     = 30
  max_retries = 3
}

mcp_server "github" {
  url         = "https://api.githubcopilot.com/mcp/"
  description = "GitHub issues, pull requests and code"
  tool_prefix = "always"
  auth {
    type  = "bearer"
    token = "$${GITHUB_TOKEN}"
  }
}

mcp_server "linear" {
  url         = "https://mcp.linear.app/mcp"
  description = "Linear tickets"
  auth {
    type        = "api_key"
    api_key     = "$LINEAR_API_KEY"
    header_name = "X-Api-Key"
  }
}

mcp_server "files" {
  transport   = "stdio"
  command     = "npx"
  args        = ["-y", "@modelcontextprotocol/server-filesystem", "/srv/shared"]
  env         = { NODE_ENV = "production" }
  description = "Shared documents, read-only"
}

group "engineering" {
  members = ["*@example.com"]
}
group "support" {
  members = ["ana@example.com", "li@example.com"]
}
group "admins" {
  members = ["root@example.com"]
}

policy {
  allow = ["github.get_*", "github/list_*", "github/create_issue", "linear/*", "files/read_file"]
  deny  = ["github/delete_*"]

  rule "engineers-push-branches" {
    effect = "allow"
    tools  = ["github/push_files", "github/create_pull_request"]
    groups = ["engineering"]
  }

  rule "no-direct-push-to-main" {
    effect = "deny"
    tools  = ["github/push_files"]
    when   = args.branch == "main" || args.branch == "master" # a bare HCL expression
    reason = "push to a branch and open a pull request instead"
  }

  rule "big-refunds-need-a-human" {
    effect = "hold"
    tools  = ["linear/create_issue"]
    groups = ["support"]
    agents = ["support-agent"]
    when   = "try(args.priority, 0) == 1" # or a string
    reason    = "urgent tickets are triaged by the on-call lead"
    approvers = ["oncall-lead@example.com"]
  }
}

intent {
  ttl_seconds  = 300
  require_csrg = true
}

test "engineers may open pull requests" {
  user   = "dev@example.com"
  tool   = "github/create_pull_request"
  expect = "allow"
}

test "nobody pushes to main" {
  user   = "dev@example.com"
  tool   = "github.push_files"
  args   = { branch = "main" }
  expect = "deny"
}

test "repositories are never deleted" {
  user   = "root@example.com"
  groups = ["admins"]
  tool   = "github/delete_repository"
  expect = "deny"
}

test "urgent tickets wait for a human" {
  user   = "ana@example.com"
  agent  = "support-agent"
  tool   = "linear/create_issue"
  args   = { priority = 1, title = "refund" }
  expect = "hold"
}

gateway "prod-eu" {
  url     = "https://gw-eu.example.com"
  api_key = "$GATEWAY_EU_KEY"
}

gateway "prod-us" {
  url     = "https://gw-us.example.com"
  api_key = "$${GATEWAY_US_KEY}"
}

identity_provider "okta" {
  issuer             = "https://example.okta.com/oauth2/default"
  audience           = "https://gateway.example.com/mcp"
  user_claim         = "email"
  groups_claim       = "groups"
  required_scopes    = ["mcp:tools"]
  allowed_algorithms = ["RS256", "ES256"]
}
