# A minimal Rails Action Cable application (Debian's Rails 6.1 gems, no railties) that the
# `cableway check` tests run against: the reference implementation of the protocol.
#
#   CABLEWAY_RAILS_TURBO_SECRET=... CABLEWAY_RAILS_JWT_SECRET=... CABLEWAY_RAILS_BROADCAST_KEY=... \
#     puma -b tcp://127.0.0.1:0 tests/rails_app/config.ru
#
# - /cable: Action Cable, with a connection identified by an optional JWT (?jid=, HS256, the
#   `ext` claim carrying the identifiers as AnyCable does) and two channels:
#   Turbo::StreamsChannel (signed stream names, verified with ActiveSupport::MessageVerifier as
#   turbo-rails does) and EchoChannel (an application channel whose `echo` action transmits
#   its data back).
# - POST /_broadcast: the application's own broadcast endpoint in Cableway's body format
#   ({"stream":…,"data":…}, Bearer key), calling ActionCable.server.broadcast.
require "json"
require "logger"
require "action_cable"
require "active_support/message_verifier"
require "jwt"

TURBO_SECRET = ENV.fetch("CABLEWAY_RAILS_TURBO_SECRET")
JWT_SECRET = ENV.fetch("CABLEWAY_RAILS_JWT_SECRET")
BROADCAST_KEY = ENV.fetch("CABLEWAY_RAILS_BROADCAST_KEY")

module ApplicationCable
  class Connection < ActionCable::Connection::Base
    identified_by :current_user

    def connect
      token = request.params["jid"]
      self.current_user = token ? user_from(token) : "anonymous"
    end

    private

    def user_from(token)
      claims, = JWT.decode(token, JWT_SECRET, true, algorithm: "HS256")
      identifiers = JSON.parse(claims.fetch("ext"))
      identifiers.fetch("user_id").to_s
    rescue JWT::DecodeError, KeyError, JSON::ParserError, TypeError
      reject_unauthorized_connection
    end
  end
end

module Turbo
  # As turbo-rails' Turbo::StreamsChannel (Turbo::Streams::StreamName#verified_stream_name).
  class StreamsChannel < ActionCable::Channel::Base
    VERIFIER = ActiveSupport::MessageVerifier.new(TURBO_SECRET, digest: "SHA256", serializer: JSON)

    def subscribed
      name = VERIFIER.verified(params[:signed_stream_name].to_s)
      name ? stream_from(name) : reject
    end
  end
end

class EchoChannel < ActionCable::Channel::Base
  def subscribed
    stream_from "echo:#{params[:room]}"
  end

  def echo(data)
    transmit(data)
  end
end

ActionCable.server.config.tap do |config|
  config.cable = { "adapter" => "async" }
  config.logger = Logger.new($stdout, level: Logger::WARN)
  config.connection_class = -> { ApplicationCable::Connection }
  config.worker_pool_size = 4
  # Rails' default forgery protection: only the cable URL's own origin is allowed
  config.allow_same_origin_as_host = true
  config.allowed_request_origins = []
end

broadcast = lambda do |env|
  request = Rack::Request.new(env)
  return [422, { "Content-Type" => "text/plain" }, ["POST only\n"]] unless request.post?
  unless env["HTTP_AUTHORIZATION"] == "Bearer #{BROADCAST_KEY}"
    return [401, { "Content-Type" => "text/plain" }, ["unauthorized\n"]]
  end

  begin
    body = JSON.parse(request.body.read)
    stream = body.fetch("stream")
    data = body.fetch("data")
  rescue JSON::ParserError, KeyError, TypeError
    return [400, { "Content-Type" => "text/plain" }, ["bad body\n"]]
  end
  message = begin
    JSON.parse(data)
  rescue JSON::ParserError, TypeError
    data
  end
  ActionCable.server.broadcast(stream, message)
  [201, { "Content-Type" => "text/plain" }, []]
end

map("/cable") { run ActionCable.server }
map("/_broadcast") { run broadcast }
map("/health") { run ->(_env) { [200, { "Content-Type" => "text/plain" }, ["ok\n"]] } }
