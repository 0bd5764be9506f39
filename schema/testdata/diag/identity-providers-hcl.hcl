version = "v1"

identity_provider "okta" {
  issuer             = "https://example.okta.com/oauth2/default"
  audience           = "https://gateway.example.com/mcp"
  allowed_algorithms = ["none", "HS256", "ES256"]
}

identity_provider "okta" {
  issuer   = "http://idp.example.com"
  audience = "api://armoriq"
}

identity_provider "no-audience" {
  issuer = "https://login.example.com"
}

identity_provider {
  issuer   = "https://unnamed.example.com"
  audience = "api://armoriq"
}
