%% Erlang/OTP diameter client for Tollgate's interop test: an independent Diameter
%% stack (OTP's diameter application, with the RFC 4006 dictionary compiled by diameterc)
%% runs CER -> CCR-I -> CCR-U -> CCR-T -> DPR with Multiple-Services-Credit-Control
%% against `tollgate serve` and checks every CCA. Prints one line per step and a closing
%% "N passed, N failed" line; halts with status 1 on failure.
%%
%% Run: erl -noshell -pa DIR -eval 'tollgate_cc_client:main(Port)'

-module(tollgate_cc_client).

-export([main/1]).
%% diameter_app callbacks
-export([peer_up/3, peer_down/3, pick_peer/4, prepare_request/3, prepare_retransmit/3,
         handle_answer/4, handle_error/4, handle_request/3]).

-include_lib("diameter/include/diameter.hrl").

-define(SERVICE, tollgate_interop_client).
-define(MSISDN, "491700000103").

main(Port) when is_integer(Port) ->
    ok = diameter:start(),
    ok = diameter:start_service(?SERVICE, service()),
    Transport = [{transport_module, diameter_tcp},
                 {transport_config, [{raddr, {127, 0, 0, 1}}, {rport, Port}, {reuseaddr, true}]}],
    true = diameter:subscribe(?SERVICE),
    {ok, Ref} = diameter:add_transport(?SERVICE, {connect, Transport}),
    Up = wait_up(10000),
    Results = [check("CER/CEA: peer up", fun() -> Up end) | session()],
    %% Removing the transport sends DPR and waits for DPA before closing.
    ok = diameter:remove_transport(?SERVICE, Ref),
    Down = wait_down(10000),
    All = Results ++ [check("DPR/DPA: peer down cleanly", fun() -> Down end)],
    Failed = length([R || R <- All, R =/= ok]),
    io:format("~p passed, ~p failed~n", [length(All) - Failed, Failed]),
    halt(case Failed of 0 -> 0; _ -> 1 end).

service() ->
    [{'Origin-Host', "erlang.test.realm"},
     {'Origin-Realm', "test.realm"},
     {'Vendor-Id', 0},
     {'Product-Name', "tollgate-interop-erlang"},
     {'Auth-Application-Id', [4]},
     {decode_format, map},
     {application, [{alias, cc}, {dictionary, rfc4006_cc}, {module, ?MODULE}]}].

wait_up(Timeout) ->
    receive
        #diameter_event{info = {up, _, _, _, _}} -> true;
        #diameter_event{info = {up, _, _, _}} -> true;
        #diameter_event{} -> wait_up(Timeout)
    after Timeout -> false
    end.

wait_down(Timeout) ->
    receive
        #diameter_event{info = {down, _, _, _}} -> true;
        #diameter_event{} -> wait_down(Timeout)
    after Timeout -> false
    end.

check(Name, Fun) ->
    Result = try Fun() of
                 true -> ok;
                 Other -> {failed, Other}
             catch Class:Reason -> {failed, {Class, Reason}}
             end,
    case Result of
        ok -> io:format("ok   ~s~n", [Name]);
        _ -> io:format("FAIL ~s: ~p~n", [Name, Result])
    end,
    Result.

ccr(Session, Type, Number, Mscc) ->
    ['CCR',
     {'Session-Id', Session},
     {'Destination-Realm', "test.realm"},
     {'Auth-Application-Id', 4},
     {'Service-Context-Id', "32251@3gpp.org"},
     {'CC-Request-Type', Type},
     {'CC-Request-Number', Number},
     {'Subscription-Id', [[{'Subscription-Id-Type', 0}, {'Subscription-Id-Data', ?MSISDN}]]},
     {'Multiple-Services-Credit-Control', [Mscc]}].

mscc(Requested, Used) ->
    [{'Rating-Group', 30}]
    ++ [{'Requested-Service-Unit', [[{'CC-Total-Octets', R}]]} || R <- [Requested], R =/= none]
    ++ [{'Used-Service-Unit', [[{'CC-Total-Octets', U}]]} || U <- [Used], U =/= none].

call(Request) ->
    diameter:call(?SERVICE, cc, Request, [{timeout, 5000}]).

%% Checks a CCA: Result-Code, type and number echoed, and the MSCC's grant.
answer_ok({ok, ['CCA' | Cca]}, Type, Number, ExpectedGrant) ->
    #{'Result-Code' := 2001, 'CC-Request-Type' := Type, 'CC-Request-Number' := Number,
      'Session-Id' := _} = Cca,
    case ExpectedGrant of
        none -> true;
        Octets ->
            [Mscc] = maps:get('Multiple-Services-Credit-Control', Cca),
            [2001] = maps:get('Result-Code', Mscc),
            [30] = maps:get('Rating-Group', Mscc),
            [Gsu] = maps:get('Granted-Service-Unit', Mscc),
            [Octets] = maps:get('CC-Total-Octets', Gsu),
            [_Validity] = maps:get('Validity-Time', Mscc),
            true
    end;
answer_ok(Other, _, _, _) ->
    Other.

session() ->
    Session = diameter:session_id("erlang.test.realm"),
    [check("CCR-I/CCA: 1 MB granted on rating group 30",
           fun() -> answer_ok(call(ccr(Session, 1, 0, mscc(1048576, none))), 1, 0, 1048576) end),
     check("CCR-U/CCA: 1 MB used, 1 MB more granted",
           fun() -> answer_ok(call(ccr(Session, 2, 1, mscc(1048576, 1048576))), 2, 1, 1048576) end),
     check("CCR-T/CCA: 0.5 MB used, session closed",
           fun() -> answer_ok(call(ccr(Session, 3, 2, mscc(none, 524288))), 3, 2, none) end)].

%% diameter_app callbacks

peer_up(_Service, _Peer, State) -> State.
peer_down(_Service, _Peer, State) -> State.
pick_peer([Peer | _], _, _Service, _State) -> {ok, Peer};
pick_peer([], _, _Service, _State) -> false.

prepare_request(#diameter_packet{msg = [Name | Avps]}, _Service, {_, Caps}) ->
    #diameter_caps{origin_host = {Host, _}, origin_realm = {Realm, _}} = Caps,
    {send, [Name, {'Origin-Host', Host}, {'Origin-Realm', Realm} | Avps]}.

prepare_retransmit(Packet, Service, Peer) -> prepare_request(Packet, Service, Peer).

handle_answer(#diameter_packet{msg = Msg, errors = []}, _Request, _Service, _Peer) -> {ok, Msg};
handle_answer(#diameter_packet{msg = Msg, errors = Errors}, _Request, _Service, _Peer) ->
    {error, {Msg, Errors}}.

handle_error(Reason, _Request, _Service, _Peer) -> {error, Reason}.

handle_request(_Packet, _Service, _Peer) -> discard.
