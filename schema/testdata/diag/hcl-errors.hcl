version     = "v1"
environment = "prod"

mcp_server "gh" {
  url = "ftp://example.com"
  auth {
    type  = "bearer"
    token = "ghp_literal"
  }
}

mcp_server "gh" {
  transport = "plugin"
  path      = "./adapter"
  sha256    = "XYZ"
}

policy {
  allow = ["gh/*", "jira/*"]
  rule "r1" {
    effect = "block"
    tools  = ["gh/x"]
    groups = ["nobody"]
    when   = args.size > limit
  }
}

test {
  user   = "a@example.com"
  tool   = "gh.x"
  expect = "allow"
  extra  = 1
}
